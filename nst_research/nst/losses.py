"""Style-transfer losses as pure functions of tensors (Gatys et al., 2016).

Loss weights (content_weight, style_weight, tv_weight) are applied by the caller, always to
the whole term.
"""

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import torch
from torch import Tensor

GRAM_NORMALIZATIONS = ("none", "chw", "hw")
CONTENT_REDUCTIONS = ("mean", "half_sum")
T = TypeVar("T")


def content_loss(features: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Squared error between feature maps: its mean, or the paper's 1/2 * sum (Gatys eq. 1)."""
    squared = (features - target).pow(2)
    if reduction == "mean":
        return squared.mean()
    if reduction == "half_sum":
        return 0.5 * squared.sum()
    raise ValueError(f"unknown content reduction {reduction!r}; choose one of {CONTENT_REDUCTIONS}")


def fp32_under_fp16(device_type: str) -> AbstractContextManager:
    """Autocast off where it would compute in fp16, whose range sums over many positions overflow; bf16 has
    fp32's range and keeps its speed."""
    fp16 = torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.float16
    return torch.autocast(device_type, enabled=False) if fp16 else nullcontext()


def gram_matrix(features: Tensor, normalization: str = "chw", mask: Tensor | None = None) -> Tensor:
    """G[b, i, j] = sum_k F[b, i, k] F[b, j, k] over positions k, divided by C*H*W, H*W or 1.

    The normalisation sets what `style_weight` means: "chw" matches the PyTorch tutorial and
    the seed projects, "hw" is a per-position average, "none" is Gatys et al.'s raw Gram.
    With a `mask` (1, 1, H, W) in [0, 1], the guided Gram of Gatys et al. (2017, "Controlling
    Perceptual Factors"): features are weighted by the mask and H*W becomes sum(mask^2).
    """
    b, c, h, w = features.shape
    positions = h * w
    if mask is not None:
        features = features * mask
        positions = mask.pow(2).sum().clamp(min=1e-8)
    flat = features.reshape(b, c, h * w)
    with fp32_under_fp16(features.device.type):  # a sum over positions exceeds fp16's range (65504)
        gram = flat @ flat.transpose(1, 2)
    divisors = {"none": 1, "chw": c * positions, "hw": positions}
    if normalization not in divisors:
        raise ValueError(f"unknown Gram normalisation {normalization!r}; choose one of {GRAM_NORMALIZATIONS}")
    return gram / divisors[normalization]


def gram_loss(features: Tensor, target_gram: Tensor, normalization: str = "chw", mask: Tensor | None = None) -> Tensor:
    """Mean squared error between the Gram matrix of `features` and a target Gram (Gatys eq. 4)."""
    return (gram_matrix(features, normalization, mask) - target_gram).pow(2).mean()


def style_loss(features: Mapping[str, Tensor], targets: Mapping[str, T], layer_weights: Mapping[str, float],
               layer_loss: Callable[[Tensor, T], Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """sum_l w_l * layer_loss(F_l, target_l) (Gatys eq. 5); also returns each layer's unweighted term."""
    per_layer = {layer: layer_loss(features[layer], targets[layer]) for layer in layer_weights}
    zero = next(iter(features.values())).new_zeros(())
    total = sum((layer_weights[layer] * loss for layer, loss in per_layer.items()), zero)
    return total, per_layer


def tv_loss(image: Tensor) -> Tensor:
    """L2 total variation: mean squared difference between neighbours, both directions, one term."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return dy.pow(2).mean() + dx.pow(2).mean()





def position_weights(features: Tensor, mask: Tensor | None) -> Tensor:
    """(1, 1, H*W) weights over positions summing to 1: uniform, or proportional to `mask`."""
    weights = features.new_ones(1, 1, features.shape[-2] * features.shape[-1]) if mask is None else mask.flatten(2)
    return weights / weights.sum().clamp(min=1e-8)


def mean_std(features: Tensor, eps: float = 1e-8, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation over positions (weighted by `mask`): (B, C) each."""
    flat, weights = features.flatten(2), position_weights(features, mask)
    mean = (flat * weights).sum(-1)
    variance = ((flat - mean.unsqueeze(-1)).pow(2) * weights).sum(-1)
    return mean, (variance + eps).sqrt()


def mean_std_loss(features: Tensor, target_mean: Tensor, target_std: Tensor, mask: Tensor | None = None) -> Tensor:
    """Match first and second moments per channel (as in AdaIN, Huang and Belongie 2017)."""
    mean, std = mean_std(features, mask=mask)
    return (mean - target_mean).pow(2).mean() + (std - target_std).pow(2).mean()


def mean_covariance(features: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-channel mean (B, C) and channel covariance over positions (B, C, C), weighted by `mask`."""
    flat, weights = features.flatten(2), position_weights(features, mask).to(features.dtype)
    mean = (flat * weights).sum(-1)
    centred = flat - mean.unsqueeze(-1)
    return mean, (centred * weights) @ centred.transpose(1, 2)


def sqrtm_psd(matrix: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag_embed(values.clamp(min=0).sqrt()) @ vectors.transpose(-2, -1)


def wasserstein2_loss(features: Tensor, target_mean: Tensor, target_cov: Tensor, target_cov_sqrt: Tensor,
                      mask: Tensor | None = None) -> Tensor:
    """Squared 2-Wasserstein distance between Gaussian fits of the features and of the target, per channel:

    W2^2 = |m1 - m2|^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2), divided by C
    (Dowson and Landau 1982; as in crowsonkb/style-transfer-pytorch). `target_cov_sqrt` is
    computed once with `sqrtm_psd`; the trace of the square root is the sum of the square roots
    of the eigenvalues, whose gradient is stable where they are distinct.

    Where a layer has fewer positions than channels most of those eigenvalues are zero, and the square
    roots of their rounding errors add up: in float32 a style against its own targets came out at -0.3
    where another image gives 97. So the statistics, the product and its eigenvalues are computed in
    float64 with autocast off, and eigenvalues within rounding noise of zero (C * machine epsilon of the
    largest, the cut-off of numpy's matrix_rank) count as zero; a fixed floor would drop real eigenvalues
    of small features. The loss comes back in the dtype of `features`.
    """
    with torch.autocast(device_type=features.device.type, enabled=False):
        target_mean, target_cov, target_cov_sqrt = (t.double() for t in (target_mean, target_cov, target_cov_sqrt))
        mean, cov = mean_covariance(features.double(), mask)
        values = torch.linalg.eigvalsh(target_cov_sqrt @ cov @ target_cov_sqrt)
        kept = values > values.amax(-1, keepdim=True) * values.shape[-1] * torch.finfo(values.dtype).eps
        root_trace = torch.where(kept, torch.where(kept, values, 1.0).sqrt(), 0.0).sum(-1)  # no sqrt(0) in backward
        traces = cov.diagonal(dim1=-2, dim2=-1).sum(-1) + target_cov.diagonal(dim1=-2, dim2=-1).sum(-1)
        distance = (mean - target_mean).pow(2).sum(-1) + traces - 2 * root_trace
        return (distance / features.shape[1]).mean().to(features.dtype)
