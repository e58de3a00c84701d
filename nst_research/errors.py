"""User-facing input errors: the one exception type, and the checks shared by every config value."""

import errno
import functools
import math
import sys
from collections.abc import Callable
from typing import ParamSpec

P = ParamSpec("P")


class UserInputError(ValueError):
    """Bad input (a path, a layer name, a weight): the message says what is wrong and how to fix it."""


def user_message(error: BaseException) -> str:
    """The error's message. An error raised while a DataLoader worker process read an item reaches the main
    process with the worker's whole traceback as its message ("Caught ... in DataLoader worker process 0.
    Original Traceback ..."): its message is the traceback's last line, less the exception's type."""
    text = str(error)
    if not (text.startswith("Caught ") and "\nOriginal Traceback" in text):
        return text
    last = text.rstrip().splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


def check_nonnegative(**values: float) -> None:
    """Each value must be a finite number >= 0; the error names the config key."""
    for name, value in values.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise UserInputError(f"{name}={value} must be a finite number >= 0")


class RunDiverged(RuntimeError):
    """The loss became NaN or infinite at `step`: the run stops and keeps its last finite image."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step

    def __reduce__(self) -> tuple:  # pickled with its step (e.g. from a benchmark's worker process)
        return type(self), (str(self), self.step)


ENVIRONMENT_FAULTS = {errno.ENOSPC: "no space left on the disk", errno.EDQUOT: "the disk quota is used up",
                      errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                      errno.EPERM: "operation not permitted"}


def environment_fault(error: BaseException) -> str | None:
    """One line for a failure of the machine rather than of the input (a full disk, a read-only or someone
    else's folder), from `error` or the error it arose from; None for any other error."""
    while error is not None and not (isinstance(error, OSError) and error.errno in ENVIRONMENT_FAULTS):
        error = error.__cause__ or error.__context__
    if error is None:
        return None
    where = f" ({error.filename})" if error.filename else ""
    fix = ("free some space, then run the command again" if error.errno in (errno.ENOSPC, errno.EDQUOT) else
           "write somewhere you may, or fix the folder's permissions")
    return f"{ENVIRONMENT_FAULTS[error.errno]}{where}; {fix}"


def one_line_errors(main: Callable[P, int]) -> Callable[P, int]:
    """A script's `main`, whose failures the user can act on end as one `error:` line on stderr: bad input (a
    `UserInputError`) with exit status 2, a fault of the machine (a full disk, a read-only folder) with 1."""

    @functools.wraps(main)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except UserInputError as error:
            print(f"error: {user_message(error)}", file=sys.stderr)
            return 2
        except OSError as error:
            fault = environment_fault(error)
            if fault is None:
                raise
            print(f"error: {fault}", file=sys.stderr)
            return 1

    return guarded
