"""Each benchmark writes its own section of docs/benchmarks.md and leaves the others alone."""

from __future__ import annotations

import os
import re
from pathlib import Path


def replace_section(path: Path, heading: str, section: str) -> None:
    """Write `section` (which starts with `heading`) into `path`, replacing the previous section
    under that heading up to the next `## ` heading, or appending it; written atomically."""
    text = (
        path.read_text(encoding="utf-8")
        if path.exists()
        else "# Benchmarks\n\nMeasured on demand; see benchmarks/README.md.\n"
    )
    pattern = re.compile(r"^" + re.escape(heading) + r"[ \t]*\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip("\n") + "\n\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    text = text.rstrip("\n") + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
