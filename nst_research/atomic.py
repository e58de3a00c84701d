"""Atomic file writes: a crash never leaves a truncated result, checkpoint or results file."""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def file_mode() -> int:
    """The mode `open()` gives a new file: 0o666 less the process's umask (read without changing it for good)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write` on a temporary file beside `path`, flush it to the disk, then rename it over `path`: `path`
    is the old file or the whole new one, even after a full disk or a power cut. The file gets the mode a plain
    `open()` would give it (the temporary file's own is owner-only)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise naming(error, path) from error
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), file_mode())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise naming(error, path) from error
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def naming(error: OSError, path: Path) -> OSError:
    """`error` naming the file being written, not its temporary file (a failed write or flush names none)."""
    return error if error.errno is None else OSError(error.errno, error.strerror, str(path))


def sync_directory(directory: Path) -> None:
    """Flush a directory's entries (a rename into it) to the disk, where the file system allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
