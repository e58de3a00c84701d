"""Style-transfer losses as pure functions of tensors (Gatys et al., 2016).

Loss weights (content_weight, style_weight, tv_weight) are applied by the caller, always to
the whole term.
"""

from collections.abc import Mapping

from torch import Tensor

GRAM_NORMALIZATIONS = ("none", "chw", "hw")
CONTENT_REDUCTIONS = ("mean", "half_sum")


def content_loss(features: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Squared error between feature maps: its mean, or the paper's 1/2 * sum (Gatys eq. 1)."""
    squared = (features - target).pow(2)
    if reduction == "mean":
        return squared.mean()
    if reduction == "half_sum":
        return 0.5 * squared.sum()
    raise ValueError(f"unknown content reduction {reduction!r}; choose one of {CONTENT_REDUCTIONS}")


def gram_matrix(features: Tensor, normalization: str = "chw") -> Tensor:
    """G[b, i, j] = sum_k F[b, i, k] F[b, j, k] over positions k, divided by C*H*W, H*W or 1.

    The normalisation sets what `style_weight` means: "chw" matches the PyTorch tutorial and
    the seed projects, "hw" is a per-position average, "none" is Gatys et al.'s raw Gram.
    """
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    gram = flat @ flat.transpose(1, 2)
    divisors = {"none": 1, "chw": c * h * w, "hw": h * w}
    if normalization not in divisors:
        raise ValueError(f"unknown Gram normalisation {normalization!r}; choose one of {GRAM_NORMALIZATIONS}")
    return gram / divisors[normalization]


def style_loss(features: Mapping[str, Tensor], target_grams: Mapping[str, Tensor],
               layer_weights: Mapping[str, float], normalization: str = "chw") -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum over layers of the mean squared Gram error; also returns each layer's unweighted term."""
    per_layer = {
        layer: (gram_matrix(features[layer], normalization) - target_grams[layer]).pow(2).mean()
        for layer in layer_weights
    }
    zero = next(iter(features.values())).new_zeros(())
    total = sum((layer_weights[layer] * loss for layer, loss in per_layer.items()), zero)
    return total, per_layer


def tv_loss(image: Tensor) -> Tensor:
    """L2 total variation: mean squared difference between neighbours, both directions, one term."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return dy.pow(2).mean() + dx.pow(2).mean()



