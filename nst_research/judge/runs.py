"""The judge inside a run: references prepared once, scores of its images, and the `eval/*` metrics logged.

Every task that makes style-transfer images judges them the same way: `RunJudge.score(image, key)` scores an
image against the reference of `key` (a scale of a run, a held-out photo, an element's shared inputs), made on
first use from the run's inputs as the user gave them and kept. results.json's `eval` block is `block(scores)`;
the loggers get `metrics(scores, prefix)` (`eval/content`, `scale/256px/eval/content`, `val/eval/content`, ...).
"""

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from torch import Tensor

from nst_research.judge.judge import FeatureJudge, Reference

# What a reference is made of: the content, the style images, their blend weights (None: equal) and masks (or None)
JudgeInputs = tuple[Tensor, Sequence[Tensor], Sequence[float] | None, Sequence[Tensor] | None]


class RunJudge:
    """A judge bound to one run's inputs: `inputs(key)` gives what the reference of `key` is prepared from."""

    def __init__(self, judge: FeatureJudge, inputs: Callable[[Hashable], JudgeInputs]):
        self.judge, self.inputs = judge, inputs
        self.references: dict[Hashable, Reference] = {}

    def reference(self, key: Hashable) -> Reference:
        if key not in self.references:
            self.references[key] = self.judge.prepare(*self.inputs(key))
        return self.references[key]

    def score(self, image: Tensor, key: Hashable = 0) -> dict[str, float]:
        """Every number of one image (1, 3, H, W) against the reference of `key`."""
        return self.judge.score(image, self.reference(key))

    def mean_score(self, images: Tensor, keys: Sequence[Hashable]) -> dict[str, float]:
        """Each number's mean over images (N, 3, H, W), image i judged against the reference of `keys[i]`."""
        return mean([self.score(image.unsqueeze(0), key) for image, key in zip(images, keys, strict=True)])

    def block(self, scores: Mapping[str, float] | None) -> dict[str, Any] | None:
        """results.json's `eval`: the judge's settings and the numbers (None when nothing was judged)."""
        return None if scores is None else {"judge": self.judge.settings(), **scores}


def mean(scores: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each number's mean over several images' scores."""
    return {key: sum(s[key] for s in scores) / len(scores) for key in scores[0]}


def metrics(scores: Mapping[str, float], prefix: str = "") -> dict[str, float]:
    """The numbers as the loggers get them: `<prefix>eval/<key>`."""
    return {f"{prefix}eval/{key}": value for key, value in scores.items()}
