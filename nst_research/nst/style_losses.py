"""Style losses chosen by name (`style_loss=gram|mean_std|wasserstein`).

Each reduces style features to statistics that can be averaged (so several styles blend by a
weighted mean of their statistics), turns those into targets once, and then gives the loss of
new features against the targets, optionally within a region given by a mask. The loss values have different scales, so each needs
its own `style_weight`.
"""

from collections.abc import Mapping, Sequence

from torch import Tensor

from nst_research.errors import UserInputError
from nst_research.nst.losses import (
    GRAM_NORMALIZATIONS,
    gram_loss,
    gram_matrix,
    mean_covariance,
    mean_std,
    mean_std_loss,
    sqrtm_psd,
    wasserstein2_loss,
)


class GramStyleLoss:
    """Gatys et al.: mean squared error between Gram matrices."""

    def __init__(self, normalization: str = "chw"):
        if normalization not in GRAM_NORMALIZATIONS:
            raise UserInputError(f"unknown gram_normalization {normalization!r}; choose one of {GRAM_NORMALIZATIONS}")
        self.normalization = normalization

    def statistics(self, features: Tensor) -> dict[str, Tensor]:
        return {"gram": gram_matrix(features, self.normalization)}

    def targets(self, statistics: dict[str, Tensor]) -> dict[str, Tensor]:
        return statistics

    def __call__(self, features: Tensor, targets: Mapping[str, Tensor], mask: Tensor | None = None) -> Tensor:
        return gram_loss(features, targets["gram"], self.normalization, mask)


class MeanStdStyleLoss:
    """Per-channel mean and standard deviation matching."""

    def statistics(self, features: Tensor) -> dict[str, Tensor]:
        mean, std = mean_std(features)
        return {"mean": mean, "std": std}

    def targets(self, statistics: dict[str, Tensor]) -> dict[str, Tensor]:
        return statistics

    def __call__(self, features: Tensor, targets: Mapping[str, Tensor], mask: Tensor | None = None) -> Tensor:
        return mean_std_loss(features, targets["mean"], targets["std"], mask)


class WassersteinStyleLoss:
    """2-Wasserstein distance between Gaussian fits (mean and covariance) of the features."""

    def statistics(self, features: Tensor) -> dict[str, Tensor]:
        mean, cov = mean_covariance(features.double())
        return {"mean": mean, "cov": cov}

    def targets(self, statistics: dict[str, Tensor]) -> dict[str, Tensor]:
        mean, cov = statistics["mean"], statistics["cov"]
        return {"mean": mean.float(), "cov": cov.float(), "cov_sqrt": sqrtm_psd(cov).float()}

    def __call__(self, features: Tensor, targets: Mapping[str, Tensor], mask: Tensor | None = None) -> Tensor:
        return wasserstein2_loss(features, targets["mean"], targets["cov"], targets["cov_sqrt"], mask=mask)


STYLE_LOSSES = ("gram", "mean_std", "wasserstein")


def make_style_loss(name: str, gram_normalization: str = "chw") -> GramStyleLoss | MeanStdStyleLoss | WassersteinStyleLoss:
    if name == "gram":
        return GramStyleLoss(gram_normalization)
    if name == "mean_std":
        return MeanStdStyleLoss()
    if name == "wasserstein":
        return WassersteinStyleLoss()
    raise UserInputError(f"unknown style_loss {name!r}; choose one of {STYLE_LOSSES}")


def blend_statistics(statistics: Sequence[dict[str, Tensor]], weights: Sequence[float]) -> dict[str, Tensor]:
    """The weighted mean of several styles' statistics (weights summing to 1)."""
    return {key: sum(w * s[key] for s, w in zip(statistics, weights, strict=True)) for key in statistics[0]}
