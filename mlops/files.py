"""Files written whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str, mode: int = 0o600, fsync: bool = False) -> None:
    """Write ``text`` to a temporary file beside ``path`` (``mode``), then rename it over ``path``: a reader
    sees the old file or the new one, never half of one, and a failure leaves no temporary file behind.
    ``fsync``: the content is on disk before the rename (survives a power loss, not only a crash)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
