"""Distances the judge measures, as pure functions of tensors.

- `sliced_wasserstein`: how far two sets of feature vectors are apart as distributions, along fixed
  random directions (Rabin et al. 2011; as a texture metric, Heitz et al. 2021). Compares the whole
  distribution of each projection, which none of the style losses (Gram, mean/std, Gaussian W2, MRF)
  optimises directly, and works between images of any size: quantiles are compared, not positions.
- `relative_feature_error`: how far one feature map is from another of the same shape, relative to the
  other's own magnitude, so that layers of different scales count alike.
"""

import torch
from torch import Tensor


def quantile_levels(count: int, device: torch.device) -> Tensor:
    """`count` evenly spaced probability levels in (0, 1): the midpoints (i + 0.5) / count."""
    return (torch.arange(count, device=device, dtype=torch.float64) + 0.5) / count


def weighted_quantiles(values: Tensor, weights: Tensor | None, levels: Tensor) -> Tensor:
    """Quantiles of each row of `values` (P, N) at `levels` (Q,): (P, Q), the nearest sample to each level
    in the (weighted) empirical distribution. `weights` (N,), one per sample, need not sum to 1."""
    ordered, order = values.sort(dim=1)
    if weights is None:
        count = values.shape[1]
        cdf = ((torch.arange(count, device=values.device, dtype=torch.float64) + 0.5) / count).expand(len(values), -1)
    else:
        w = weights.to(torch.float64)[order]
        cdf = (w.cumsum(dim=1) - 0.5 * w) / w.sum(dim=1, keepdim=True)
    index = torch.searchsorted(cdf.contiguous(), levels.expand(len(values), -1).contiguous())
    return ordered.gather(1, index.clamp(max=values.shape[1] - 1))


def projected_quantiles(samples: Tensor, directions: Tensor, levels: Tensor, weights: Tensor | None = None) -> Tensor:
    """The quantiles (P, Q) of `samples` (N, C) projected on each column of `directions` (C, P)."""
    return weighted_quantiles((samples @ directions).T, weights, levels)


def sliced_wasserstein(quantiles: Tensor, target_quantiles: Tensor) -> Tensor:
    """Sliced 2-Wasserstein distance from quantiles (P, Q) of each projection, relative to the target's spread:

        SW = sqrt(mean_p W2(proj_p X, proj_p Y)^2) / sqrt(mean_p Var(proj_p Y))

    where W2 between one-dimensional distributions is the L2 distance of their quantile functions. Divided
    by the target's spread, it has no units: 0 for the same distribution, about 1.4 for an unrelated one
    of the same spread, whatever the layer's activation scale."""
    squared = (quantiles - target_quantiles).pow(2).mean()
    spread = target_quantiles.var(dim=1, unbiased=False).mean().clamp(min=1e-12)
    return (squared / spread).sqrt()


def positions(features: Tensor) -> Tensor:
    """(B, C, H, W) features as (B * H * W, C) samples, one per position."""
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])


def relative_feature_error(features: Tensor, target: Tensor) -> Tensor:
    """||F - T|| / ||T||: 0 for the same features, about 1 or more for an unrelated image."""
    return (features - target).norm() / target.norm().clamp(min=1e-12)
