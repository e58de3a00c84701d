"""One writer per run directory: an OS file lock on `<run dir>/.lock`.

A run, a resume and any other command that writes into a run directory holds an exclusive `flock` on its
`.lock` file for as long as it writes. The kernel releases it when the process ends, however it ends (SIGKILL
and power loss included), so a stale lock cannot exist. The file holds the holder's process id, which the
refusal names. Tools that only read a run (compare, dashboard) ask whether it is running (`is_running`).
"""

import contextlib
import errno
import fcntl
import os
from pathlib import Path

LOCK_FILE = ".lock"


class RunBusy(RuntimeError):
    """Another process holds the run directory's lock."""


class RunLock:
    """`with RunLock(run_dir):` holds `run_dir`'s lock, or raises `RunBusy` naming the holder, having written
    nothing. The directory is created if it does not exist."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise RunBusy(f"{self.path.parent} is in use by {who} (a run or resume writing into it); "
                          "wait for it to end, or stop it, then try again") from None
        with contextlib.suppress(OSError):  # a full disk: the lock holds without the id; the run's writes will fail
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file releases the lock
            self.fd = None


def is_running(run_dir: Path) -> bool:
    """Whether a process holds `run_dir`'s lock now: a shared lock that cannot be had means a writer has it. The
    probe holds it for the instant it takes; a run directory without a lock file has never been written by a run."""
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as error:
        return error.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)  # closing the file releases the probe's lock
    return False
