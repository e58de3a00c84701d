"""What a style-transfer run's results.json holds: `StyleTransferResults`, one `ScaleRecord` per scale."""

from dataclasses import dataclass, field
from typing import Any

from nst_research.tracking.results import RunResults


@dataclass
class ScaleRecord:
    """One scale of a run: its size, the steps and loss evaluations taken at it, its losses, and the judge's
    numbers for its end image (None when the run is not judged)."""

    image_size: list[int]
    steps: int
    loss_evaluations: int
    initial_losses: dict[str, float]
    final_losses: dict[str, float]
    eval: dict[str, float] | None = None


@dataclass(kw_only=True)
class StyleTransferResults(RunResults):
    """results.json of a style transfer: totals over its scales, the first scale's initial losses and the
    last one's final losses (every loss term by name, measured in fp32 whatever the run's `precision`), each
    scale's record, `precision` (the number format the steps ran in, the network's memory layout and why),
    and `eval`, the judge's settings and numbers for the result image (no `eval` key when the run is not
    judged)."""

    task: str = "nst"
    steps: int = 0
    loss_evaluations: int = 0
    image_size: list[int] | None = None
    device: str | None = None
    precision: dict[str, Any] | None = None
    initial_losses: dict[str, float] = field(default_factory=dict)
    final_losses: dict[str, float] = field(default_factory=dict)
    scales: list[ScaleRecord] = field(default_factory=list)
    eval: dict[str, Any] | None = None

    def headline(self) -> dict[str, Any]:
        return {**{f"final/{term}": self.final_losses.get(term) for term in ("total", "content", "style", "tv")},
                **eval_headline(self.eval), "steps": self.steps}

    def to_dict(self) -> dict[str, Any]:
        return without_empty_eval(super().to_dict())

    @classmethod
    def of(cls, status: str, scales: list[ScaleRecord], seed: int, device: str | None,
           error: str | None = None, judge: dict[str, Any] | None = None,
           precision: dict[str, Any] | None = None) -> "StyleTransferResults":
        """The results of a run that finished `scales` (none if it never started); `judge` (the judge's settings)
        heads the `eval` block of the last scale's numbers."""
        judged = scales[-1].eval if scales and judge is not None else None
        return cls(status=status, seed=seed, error=error, device=device, precision=precision, scales=scales,
                   eval=None if judged is None else {"judge": judge, **judged},
                   result="result.png" if scales else None,
                   steps=sum(r.steps for r in scales), loss_evaluations=sum(r.loss_evaluations for r in scales),
                   image_size=scales[-1].image_size if scales else None,
                   initial_losses=scales[0].initial_losses if scales else {},
                   final_losses=scales[-1].final_losses if scales else {})


def eval_headline(block: dict[str, Any] | None) -> dict[str, float | None]:
    """The judge's numbers in the W&B results table: content kept, style taken, and their balance (none when
    the run was not judged)."""
    return {} if block is None else {f"eval/{key}": block.get(key) for key in ("content", "style", "score")}


def without_empty_eval(record: dict[str, Any]) -> dict[str, Any]:
    """A results.json record with no `eval` key (its own or its scales') where nothing was judged."""
    for entry in (record, *record.get("scales", [])):
        if entry.get("eval", {}) is None:
            del entry["eval"]
    return record


def scale_records(previous: dict[str, Any]) -> list[ScaleRecord]:
    """The scale records of a previous results.json (a resumed run's)."""
    return [ScaleRecord(**record) for record in previous.get("scales", [])]


@dataclass(kw_only=True)
class BatchedResults(RunResults):
    """What a batched sweep returns (each element writes its own results.json): the elements' results."""

    task: str = "nst"
    directory: str = "."
    names: list[str] = field(default_factory=list)
    runs: list[StyleTransferResults] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "runs": [run.to_dict() for run in self.runs]}
