"""Names nb2prod generates (distribution, package, module) are validated and normalised here."""

from __future__ import annotations

import keyword
import re
import sys

RESERVED_MODULES = frozenset(
    {"params", "train", "predict", "explain", "_runtime", "_sourcemap", "__init__", "__main__", "tests"}
)


def distribution_name(raw: str) -> str:
    """PEP 503-style: lower case, runs of other characters become one dash."""
    name = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")
    if not name:
        name = "notebook"
    if name[0].isdigit():
        name = f"nb-{name}"
    return name


def package_name(dist: str) -> str:
    name = dist.replace("-", "_")
    if keyword.iskeyword(name) or name in sys.stdlib_module_names:
        name = f"{name}_pkg"
    return name


def module_name(raw: str) -> tuple[str | None, str | None]:
    """Return (normalised module name, None) or (None, reason it can't be one)."""
    name = re.sub(r"[^0-9a-zA-Z_]+", "_", raw.strip()).strip("_").lower()
    if not name:
        return None, f"{raw!r} is not a module name"
    if name[0].isdigit():
        return None, f"module name {raw!r} starts with a digit"
    if keyword.iskeyword(name):
        return None, f"module name {raw!r} is a Python keyword"
    if name in RESERVED_MODULES:
        return None, f"module name {raw!r} is used by the generated package itself"
    return name, None
