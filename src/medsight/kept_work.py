"""Names of finished work a command keeps for its next run (``OUT_DIR/parts/<key>/``, feature caches): a digest
of everything the work depends on, so a run with other inputs or settings never picks up another's parts."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def settings_key(settings: list[Any], source: str | Path | None = None) -> str:
    """12 hex digits of the SHA-1 of ``source``'s bytes (when given: a points CSV, a manifest) followed by the
    JSON of ``settings``."""
    digest = hashlib.sha1(Path(source).read_bytes() if source is not None else b"")
    digest.update(json.dumps(settings).encode())
    return digest.hexdigest()[:12]
