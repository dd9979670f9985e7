"""Errors raised by the run store, the aliases and the training engines."""

from __future__ import annotations

from nb2prod.errors import InputError, Nb2prodError


class RunNotFound(InputError):
    """A run id, id prefix or alias that names no run in the store."""


class IntegrityError(Nb2prodError):
    """A stored file does not match the sha256 recorded when the run was written."""


class PromotionRefused(InputError):
    """The run cannot be the target of an alias (its quality gates failed, or it errored)."""


class TrainingFailed(Nb2prodError):
    """A run was recorded but did not succeed: a quality gate failed or the job raised."""

    exit_code = 1

    def __init__(self, message: str, run_id: str, status: str):
        super().__init__(message)
        self.run_id = run_id
        self.status = status


class StoreWarning(UserWarning):
    """One unreadable file of a run store (a run.json, an alias file, a history line) was skipped."""
