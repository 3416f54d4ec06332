"""Writing a file so that nothing half-written is ever seen, and cleaning up after killed writers.

Every file the project writes (Parquet partitions, reports, pictures, import and audit reports,
review keys) goes through :func:`write_atomic`: the content goes to a temp file in the target's
own directory, which is renamed over the target only when complete. A failed write leaves the
previous version in place and no temp file behind. The temp file is named after its writer's
pid (``.<stem>-<pid>-<random><suffix>.tmp``), so the one a killed writer leaves is recognised and
deleted by the next write to that directory and by ``staffml run`` when it starts
(:func:`remove_orphan_temps`).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TEMP_GLOB = ".*.tmp"
_TEMP_PID = re.compile(r"^\.(?P<stem>.+)-(?P<pid>\d+)-[a-z0-9_]+(?P<suffix>\.[^/]*)?\.tmp$")
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # what open() would give; mkstemp's own is owner-only
STALE_UNOWNED_SECONDS = 3600  # a temp file without a writer's pid (an older layout) is an orphan after this


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphan_temps(directory: Path, recursive: bool = True) -> list[Path]:
    """Delete the temp files of writes whose process is gone (a kill between the write and
    its rename leaves one) under ``directory``; a write in progress is never touched.
    Returns what was deleted."""
    removed = []
    found = (directory.rglob(TEMP_GLOB) if recursive else directory.glob(TEMP_GLOB)) if directory.is_dir() else ()
    for tmp in found:
        owner = _TEMP_PID.match(tmp.name)
        try:
            orphan = (
                not _writer_alive(int(owner["pid"]))
                if owner
                else time.time() - tmp.stat().st_mtime > STALE_UNOWNED_SECONDS
            )
            if orphan:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            continue
    return removed


def write_atomic(path: Path, data: bytes | str | Callable[[Path], object]) -> Path:
    """Write ``path`` whole or not at all: ``data`` (bytes, or text written as UTF-8) or, for a
    writer such as ``pyarrow.parquet.write_table``, ``data(temp_path)`` writes the file itself.
    The parent directory is created; orphans of killed writers in it are deleted first; the file
    gets the umask's permissions. On any failure, the exception propagates, the previous file is
    untouched and the temp file is removed. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphan_temps(path.parent, recursive=False)
    stem, dot, suffix = path.name.partition(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}-{os.getpid()}-", suffix=f"{dot}{suffix}.tmp", dir=path.parent)
    try:
        if callable(data):
            os.close(fd)
            data(Path(tmp))
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
