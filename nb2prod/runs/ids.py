"""Run identifiers: sortable by creation time, unique even for runs started in the same second.

The patterns and checks are those of the runtime shipped in generated packages, so nb2prod and a
package's own predict accept exactly the same run ids and alias names (the whole text must match:
no trailing newline, no separators, no `..`).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

from nb2prod.runtime import ALIAS_PATTERN, RUN_ID_PATTERN, is_alias_name, is_run_id

__all__ = ["ALIAS_PATTERN", "RUN_ID_PATTERN", "is_alias_name", "is_run_id", "new_run_id", "utc_now_iso"]


def new_run_id(now: datetime | None = None) -> str:
    """`20261130T133403Z-3f9a1c`: the UTC start second, then 24 random bits."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"{moment:%Y%m%dT%H%M%S}Z-{secrets.token_hex(3)}"


def utc_now_iso() -> str:
    """The current UTC time with microseconds, e.g. `2026-11-30T13:34:03.512345Z`."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
