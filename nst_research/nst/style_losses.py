"""Style losses of one layer's features, each a `_target_` node in `conf/style_loss/`.

`style_loss=gram|mean_std|wasserstein` picks one. Each reduces style features to statistics,
blends several styles' statistics (a weighted mean by default), turns them into targets once, and
then gives the loss of new features against the targets, optionally within a region given by a
mask. The loss values have different scales, so each needs its own `style_weight`.
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


class StyleLoss:
    """The interface `StyleTerm` uses; a new style loss subclasses it and has a YAML in conf/style_loss/."""

    def statistics(self, features: Tensor) -> dict[str, Tensor]:
        """What the loss keeps of a style image's features at one layer."""
        raise NotImplementedError

    def blend(self, statistics: Sequence[dict[str, Tensor]], weights: Sequence[float]) -> dict[str, Tensor]:
        """Several styles' statistics as one (`style_blend`): their weighted mean (weights summing to 1)."""
        return {key: sum(w * s[key] for s, w in zip(statistics, weights, strict=True)) for key in statistics[0]}

    def targets(self, statistics: dict[str, Tensor]) -> dict[str, Tensor]:
        """The tensors `__call__` compares with, computed once from the (blended) statistics."""
        return statistics

    def __call__(self, features: Tensor, targets: Mapping[str, Tensor], mask: Tensor | None = None) -> Tensor:
        """The loss of `features` (B, C, H, W) against `targets`, within `mask` (1, 1, H, W) if given."""
        raise NotImplementedError


class GramStyleLoss(StyleLoss):
    """Gatys et al.: mean squared error between Gram matrices."""

    def __init__(self, normalization: str = "chw"):
        if normalization not in GRAM_NORMALIZATIONS:
            raise UserInputError(f"unknown gram_normalization {normalization!r}; choose one of {GRAM_NORMALIZATIONS}")
        self.normalization = normalization

    def statistics(self, features: Tensor) -> dict[str, Tensor]:
        return {"gram": gram_matrix(features, self.normalization)}

    def __call__(self, features: Tensor, targets: Mapping[str, Tensor], mask: Tensor | None = None) -> Tensor:
        return gram_loss(features, targets["gram"], self.normalization, mask)


class MeanStdStyleLoss(StyleLoss):
    """Per-channel mean and standard deviation matching."""

    def statistics(self, features: Tensor) -> dict[str, Tensor]:
        mean, std = mean_std(features)
        return {"mean": mean, "std": std}

    def __call__(self, features: Tensor, targets: Mapping[str, Tensor], mask: Tensor | None = None) -> Tensor:
        return mean_std_loss(features, targets["mean"], targets["std"], mask)


class WassersteinStyleLoss(StyleLoss):
    """2-Wasserstein distance between Gaussian fits (mean and covariance) of the features."""

    def statistics(self, features: Tensor) -> dict[str, Tensor]:
        mean, cov = mean_covariance(features.double())
        return {"mean": mean, "cov": cov}

    def targets(self, statistics: dict[str, Tensor]) -> dict[str, Tensor]:
        mean, cov = statistics["mean"], statistics["cov"]
        return {"mean": mean.float(), "cov": cov.float(), "cov_sqrt": sqrtm_psd(cov).float()}

    def __call__(self, features: Tensor, targets: Mapping[str, Tensor], mask: Tensor | None = None) -> Tensor:
        return wasserstein2_loss(features, targets["mean"], targets["cov"], targets["cov_sqrt"], mask=mask)
