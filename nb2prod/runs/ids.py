"""Run identifiers: sortable by creation time, unique even for runs started in the same second."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

RUN_ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
ALIAS_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def new_run_id(now: datetime | None = None) -> str:
    """`20261130T133403Z-3f9a1c`: the UTC start second, then 24 random bits."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"{moment:%Y%m%dT%H%M%S}Z-{secrets.token_hex(3)}"


def is_run_id(text: str) -> bool:
    return bool(RUN_ID_PATTERN.match(text))


def is_alias_name(text: str) -> bool:
    """Alias names are identifiers that can never be mistaken for a run id."""
    return bool(ALIAS_PATTERN.match(text)) and not text[:1].isdigit()


def utc_now_iso() -> str:
    """The current UTC time with microseconds, e.g. `2026-11-30T13:34:03.512345Z`."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
