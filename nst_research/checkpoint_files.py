"""Reading checkpoint files safely: tensors and plain values only (a file cannot run code), and a file that is
truncated, damaged or another program's is one line naming it. `newest_readable` picks the checkpoint a resume
continues from, passing over damaged ones."""

import errno
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from nst_research.errors import UserInputError
from nst_research.tracking.console import notice


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's contents, read as tensors and plain values only (a file cannot run code); a file that is
    truncated, damaged or written by another program is a UserInputError naming it."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's message on objects advises loading it unsafely: not passed on
        if str(error).startswith("Weights only load failed"):
            raise UserInputError(f"cannot read checkpoint {path}: it holds objects other than tensors and plain "
                                 "values (a file of another program?)") from None
        content = error
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as error:
        content = error
    except OSError as error:  # a seek past the start of a file cut short; other errors are the environment's
        if error.errno not in (errno.EINVAL, None):
            raise
        content = error
    if isinstance(content, BaseException):
        reason = (str(content).split(". ")[0].splitlines() or [type(content).__name__])[0]
        raise UserInputError(f"cannot read checkpoint {path}: it is truncated, damaged or not a checkpoint "
                             f"({reason})")
    if not isinstance(content, dict):
        raise UserInputError(f"cannot read checkpoint {path}: it holds a {type(content).__name__}, not a checkpoint")
    return content


def newest_readable(candidates: list[Path]) -> tuple[Path, dict[str, Any]]:
    """The newest of `candidates` (existing files) that reads as a checkpoint, and its contents; each newer one
    that does not read is named in one notice. A UserInputError naming the first problem when none reads."""
    problems = []
    for path in sorted(candidates, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            content = read_checkpoint(path)
        except UserInputError as error:
            problems.append(str(error))
            continue
        for problem in problems:
            notice(f"resume: {problem}; continuing from {path}, the newest checkpoint that reads")
        return path, content
    raise UserInputError(f"{problems[0]}; no other checkpoint of the run reads: start a new run")
