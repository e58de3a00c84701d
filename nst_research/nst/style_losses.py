"""Style losses of one layer's features, each a `_target_` node in `conf/style_loss/`.

`style_loss=gram|mean_std|wasserstein` picks one. Each reduces style features to statistics,
blends several styles' statistics (a weighted mean by default), turns them into targets once, and
then gives the loss of new features against the targets, optionally within a region given by a
mask. The loss values have different scales, so each needs its own `style_weight`.
"""

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from nst_research.errors import UserInputError
from nst_research.nst.losses import (
    GRAM_NORMALIZATIONS,
    fp32_under_fp16,
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

    def blend(self, statistics: Sequence[dict[str, Tensor]], weights: Sequence[float]) -> dict[str, Tensor]:
        """The Gaussian fit of the styles' pooled features (their mixture), as crowsonkb/style-transfer-pytorch:
        the weighted mean of the means and of the second moments E[x x^T], so the covariance is
        sum_i w_i (cov_i + m_i m_i^T) - m m^T = sum_i w_i (cov_i + (m_i - m)(m_i - m)^T), the second form
        without the cancellation. A mean of covariances would drop the spread between the styles' means."""
        mean = sum(w * s["mean"] for s, w in zip(statistics, weights, strict=True))
        cov = torch.zeros_like(statistics[0]["cov"])
        for s, w in zip(statistics, weights, strict=True):
            spread = s["mean"] - mean  # (B, C)
            cov = cov + w * (s["cov"] + spread.unsqueeze(-1) * spread.unsqueeze(-2))
        return {"mean": mean, "cov": cov}

    def targets(self, statistics: dict[str, Tensor]) -> dict[str, Tensor]:
        mean, cov = statistics["mean"], statistics["cov"]
        return {"mean": mean.float(), "cov": cov.float(), "cov_sqrt": sqrtm_psd(cov).float()}

    def __call__(self, features: Tensor, targets: Mapping[str, Tensor], mask: Tensor | None = None) -> Tensor:
        return wasserstein2_loss(features, targets["mean"], targets["cov"], targets["cov_sqrt"], mask=mask)


class MRFStyleLoss(StyleLoss):
    """Li and Wand (2016), "Combining Markov Random Fields and CNNs for Image Synthesis", eq. 2:

        E_s = sum_i || Psi_i(F) - Psi_NN(i)(F_s) ||^2,
        NN(i) = argmax_j <Psi_i(F), Psi_j(F_s)> / (|Psi_i(F)| |Psi_j(F_s)|)

    Psi_i are `patch_size` x `patch_size` neural patches (every `stride` positions): each patch of the
    image is matched to the style patch of highest normalised cross-correlation, and pulled towards it.
    Here the squared distances are averaged (over patches and their values), so the weight does not
    grow with the image size. The matching runs without gradients, `chunk_size` style patches at a
    time, so its memory stays at (image patches x chunk_size) scores. Several styles pool their
    patches (unequal `style_blend` weights are refused); with masks each region matches its own style.
    """

    def __init__(self, patch_size: int = 3, stride: int = 1, chunk_size: int = 1024):
        for key, value in (("patch_size", patch_size), ("stride", stride), ("chunk_size", chunk_size)):
            if not isinstance(value, int) or value < 1:
                raise UserInputError(f"style_loss.{key}={value} must be an integer >= 1")
        self.patch_size, self.stride, self.chunk_size = patch_size, stride, chunk_size

    def starts(self, size: int) -> Tensor:
        """Where patches start along a side of `size`: every `stride` positions, and the last start (size - k)
        where the stride steps over it, so that every position is in a patch (as Li and Wand's CNNMRF)."""
        starts = list(range(0, size - self.patch_size + 1, self.stride))
        if starts[-1] != size - self.patch_size:
            starts.append(size - self.patch_size)
        return torch.tensor(starts)

    def patches(self, features: Tensor) -> Tensor:
        """(B * L, C * k * k): every patch of `features` (B, C, H, W) as a row, rows in raster order of the
        patches' start positions (as F.unfold)."""
        if min(features.shape[-2:]) < self.patch_size:
            raise UserInputError(f"features of {tuple(features.shape[-2:])} px are smaller than the MRF patch "
                                 f"({self.patch_size} px): raise image_size or use shallower style layers")
        k = self.patch_size
        if self.stride == 1:
            return F.unfold(features, k).transpose(1, 2).flatten(0, 1)  # (B, C*k*k, L) -> (B*L, C*k*k)
        rows, columns = self.starts(features.shape[-2]), self.starts(features.shape[-1])
        windows = features.unfold(2, k, 1).unfold(3, k, 1)  # a view: (B, C, H-k+1, W-k+1, k, k)
        chosen = windows[:, :, rows[:, None], columns]  # (B, C, rows, columns, k, k)
        return chosen.permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(0, 2)

    def statistics(self, features: Tensor) -> dict[str, Tensor]:
        return {"patches": self.patches(features)}

    def blend(self, statistics: Sequence[dict[str, Tensor]], weights: Sequence[float]) -> dict[str, Tensor]:
        if max(weights) - min(weights) > 1e-9:
            raise UserInputError(f"style_loss=mrf pools the styles' patches and cannot weight them (style_blend="
                                 f"{list(weights)}); drop style_blend, or give each style a region with masks")
        return {"patches": torch.cat([s["patches"] for s in statistics])}

    def targets(self, statistics: dict[str, Tensor]) -> dict[str, Tensor]:
        patches = statistics["patches"]
        return {"patches": patches, "unit": patches / patches.norm(dim=1, keepdim=True).clamp(min=1e-8)}

    @torch.no_grad()
    def nearest(self, patches: Tensor, unit_targets: Tensor) -> Tensor:
        """For each row of `patches`, the index of the target patch of highest normalised cross-correlation
        (dividing by the image patch's own norm does not change which target is highest)."""
        best = torch.full((len(patches),), -torch.inf, device=patches.device)
        index = torch.zeros(len(patches), dtype=torch.long, device=patches.device)
        for start in range(0, len(unit_targets), self.chunk_size):
            with fp32_under_fp16(patches.device.type):  # unnormalised patches' scores can exceed fp16's range
                scores = patches @ unit_targets[start:start + self.chunk_size].T
            value, position = scores.max(dim=1)
            better = value > best
            best = torch.where(better, value, best)
            index = torch.where(better, position + start, index)
        return index

    def __call__(self, features: Tensor, targets: Mapping[str, Tensor], mask: Tensor | None = None) -> Tensor:
        patches = self.patches(features)
        matched = targets["patches"][self.nearest(patches.detach(), targets["unit"])]
        distances = (patches - matched).pow(2).mean(dim=1)
        if mask is None:
            return distances.mean()
        centre = self.patch_size // 2  # each patch counts as much as the mask at its centre
        weights = self.patches(mask.expand(len(features), -1, -1, -1))[:, centre * self.patch_size + centre]
        return (distances * weights).sum() / weights.sum().clamp(min=1e-8)
