"""Writing model folders so that a reader never sees a half-written one (no torch needed)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def staging_folder(target: Path) -> Path:
    """A new hidden folder beside ``target`` to write into before :func:`replace_folder`. Made with
    ``mkdir`` (not ``mkdtemp``, which is private to its owner) so the result has the umask's usual
    permissions. Raises ``OSError`` when the parent cannot be written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    return staging


def replace_folder(source: Path, target: Path) -> None:
    """Move ``source`` to ``target`` so that ``target`` is never half-written: an old ``target``
    is set aside first and removed only once the new one is in place."""
    backup = None
    if target.exists():
        backup = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, backup)
    try:
        os.replace(source, target)
    except BaseException:
        if backup is not None:
            os.replace(backup, target)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
