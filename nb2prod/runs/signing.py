"""Optional signing of runs: an HMAC-SHA256 key signs each run's run.json into run.json.sig.

The key comes from `--signing-key-file FILE`, else `$NB2PROD_SIGNING_KEY` (the key itself), else
`$NB2PROD_SIGNING_KEY_FILE`. When one is set, every run written is signed, and promote, predict,
serve and score refuse runs that are unsigned or signed with another key; joblib (pickle) models
are loaded only from runs signed with the configured key, or with an explicit `--trust-pickle`.
The signing and checking code is the runtime's (`nb2prod/runtime.py`), shipped in every package.
"""

from __future__ import annotations

import os
from pathlib import Path

from nb2prod import runtime
from nb2prod.errors import InputError

KEY_ENV = runtime.SIGNING_KEY_ENV
KEY_FILE_ENV = runtime.SIGNING_KEY_FILE_ENV


def resolve_signing_key(key_file: Path | str | None = None) -> bytes | None:
    """The configured signing key, or None; InputError names a key file that cannot be used."""
    try:
        return runtime.read_signing_key(key_file, os.environ)
    except runtime.SigningKeyError as exc:
        setting = "--signing-key-file" if key_file is not None else f"${KEY_FILE_ENV}"
        raise InputError(f"{exc} (from {setting}).") from None
