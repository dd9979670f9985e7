"""Keeping secret parameters' values out of everything a run writes.

A secret's value lives only in memory (and, for the papermill engine, in the kernel's environment).
What the job itself prints or raises may still hold it, so before a run is recorded every file of
its staging folder, its failure and the collected report are scrubbed: each spelling of the value
(as text, its repr and JSON escapes, base64, hex) becomes `***`. A file that holds the value but is
not text (a model that pickled the key) is removed and the run fails, naming it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from nb2prod.runs.record import Failure
from nb2prod.runtime import redact_text, secret_forms


@dataclass(frozen=True)
class Redaction:
    forms: tuple[str, ...] = ()  # longest first

    def text(self, text: str) -> str:
        return redact_text(text, self.forms) if self.forms else text

    def scrub(self, value: Any) -> Any:
        """`value` (JSON-like) with every secret spelling in its strings replaced by `***`."""
        if not self.forms:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.scrub(k): self.scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.scrub(v) for v in value)
        return value

    def scrub_failure(self, failure: Failure | None) -> Failure | None:
        if failure is None or not self.forms:
            return failure
        return dataclasses.replace(failure, message=self.text(failure.message), traceback=self.text(failure.traceback))

    def scrub_folder(self, folder: Path) -> str | None:
        """Redact every text file under `folder`; remove files that hold a secret but are not text.
        Returns a sentence naming the removed files, or None."""
        if not self.forms:
            return None
        needles = [form.encode("utf-8") for form in self.forms]
        removed: list[str] = []
        for root, _dirs, names in os.walk(folder):
            for name in names:
                path = Path(root) / name
                if path.is_symlink() or not path.is_file():
                    continue
                data = path.read_bytes()
                if not any(needle in data for needle in needles):
                    if _zip_holds(path, needles):  # e.g. a compressed model archive
                        path.unlink()
                        removed.append(str(path.relative_to(folder)))
                    continue
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    path.unlink()
                    removed.append(str(path.relative_to(folder)))
                    continue
                path.write_bytes(self.text(text).encode("utf-8"))
        if not removed:
            return None
        return (
            f"{', '.join(sorted(removed))} held the value of a secret parameter and was removed: keep secrets out of"
            " the model and of what the job saves"
        )


def _zip_holds(path: Path, needles: list[bytes]) -> bool:
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                data = archive.read(info)
                if any(needle in data for needle in needles):
                    return True
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError):
        return False
    return False


def redaction(names: Iterable[str], params: Mapping[str, Any]) -> Redaction:
    """The redaction of the values the secret parameters `names` have in `params`."""
    return Redaction(tuple(secret_forms(params.get(name) for name in names)))
