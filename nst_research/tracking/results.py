"""`results.json`: the machine-readable summary of a run that comparison tools read.

`RunResults` holds the fields every task writes; each task declares its own subclass with the
rest (`StyleTransferResults`, `GANResults`), so the file's contents are a declared type.
"""

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nst_research.atomic import write_atomic
from nst_research.errors import UserInputError

STATUSES = ("completed", "failed", "interrupted", "diverged")


@dataclass
class Artifact:
    """Files of a run's directory that W&B versions as one artifact (`<kind>-<run id>`, of type `kind`)."""

    kind: str
    files: list[str]
    aliases: list[str] = field(default_factory=lambda: ["latest"])


@dataclass(kw_only=True)
class RunResults:
    """What every run's results.json says: how it ended, how long it took, and its headline file."""

    status: str
    task: str
    wall_time_s: float = 0.0
    seed: int | None = None
    result: str | None = None  # the headline file (an image), relative to the run directory
    error: str | None = None

    def headline(self) -> dict[str, Any]:
        """The numbers a comparison of runs shows first (the results table's columns)."""
        return {}

    def artifacts(self) -> list[Artifact]:
        """What W&B versions: the result, its results.json and config.yaml."""
        return [Artifact("result", [name for name in (self.result, "results.json", "config.yaml") if name])]

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        if record["error"] is None:
            del record["error"]
        return record


def write_results(path: Path, results: RunResults | dict[str, Any]) -> None:
    record = results.to_dict() if isinstance(results, RunResults) else results
    text = json.dumps(record, indent=2, sort_keys=False) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))


def lookup(record: Any, path: Sequence[str]) -> Any:
    """The value at `path` in a results.json record (`("eval", "content")`), or None where there is none."""
    for key in path:
        record = record.get(key) if isinstance(record, dict) else None
    return record


def read_results(path: Path) -> dict[str, Any]:
    """A results.json as a dict ({} when there is none); a damaged one is a UserInputError naming it."""
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserInputError(f"cannot read {path}: it is damaged ({error}); restore it, or move that run "
                             "aside") from None
    if not isinstance(record, dict):
        raise UserInputError(f"cannot read {path}: it holds a {type(record).__name__}, not a run's results; restore "
                             "it, or move that run aside")
    return record
