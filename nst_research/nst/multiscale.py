"""Coarse-to-fine style transfer: the schedule of sizes, and carrying an image (and optimizer state) from one
scale to the next.

Optimising first at a small size settles the large-scale layout cheaply; each finer scale
starts from the previous result upsampled, with the targets recomputed at its own size (as
jcjohnson/neural-style's multires recipe and crowsonkb/style-transfer-pytorch do).
"""

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from nst_research.errors import UserInputError
from nst_research.nst.sources import MIN_IMAGE_SIZE


def scale_sizes(image_size: int, min_size: int | None, factor: float) -> list[int]:
    """Long sides from coarse to fine: image_size / factor**k for k = ..., 2, 1, 0, none below min_size.

    `min_size=None` is a single scale. With factor sqrt(2), 128 -> 512 gives 128, 181, 256, 362, 512.
    """
    if min_size is None:
        return [image_size]
    if not isinstance(min_size, int) or not MIN_IMAGE_SIZE <= min_size <= image_size:
        raise UserInputError(f"multiscale.min_size={min_size} must be an integer from {MIN_IMAGE_SIZE} to "
                             f"image_size={image_size}; or null for a single scale")
    if not (isinstance(factor, int | float) and factor > 1):
        raise UserInputError(f"multiscale.factor={factor} must be a number > 1 (the size ratio between scales)")
    sizes, k = [], 0
    while (size := round(image_size / factor**k)) >= min_size:
        if not sizes or size < sizes[-1]:
            sizes.append(size)
        k += 1
    return sizes[::-1]


def scale_steps(sizes: list[int], iterations: int, coarse_iterations: int | None) -> list[int]:
    """Steps at each scale: `coarse_iterations` at every scale below the last (default `iterations`)."""
    if coarse_iterations is None:
        coarse_iterations = iterations
    if not isinstance(coarse_iterations, int) or coarse_iterations < 1:
        raise UserInputError(f"multiscale.iterations={coarse_iterations} must be an integer >= 1; "
                             "or null for `iterations` at every scale")
    return [coarse_iterations] * (len(sizes) - 1) + [iterations]


def upsample(image: Tensor, like: Tensor) -> Tensor:
    """`image` resized (bicubic) to the height and width of `like`, clamped to [0, 1]."""
    resized = F.interpolate(image, size=like.shape[-2:], mode="bicubic", align_corners=False)
    return resized.clamp(0, 1).contiguous()


def resize_state(state: dict[str, Any], like: list[Tensor]) -> dict[str, Any]:
    """An optimizer's state dict with each parameter's image-shaped state (Adam's moments, SGD's momentum)
    resized to the shape of that parameter in `like`: crowsonkb/style-transfer-pytorch's warm start of Adam at
    each new scale. Bilinear, so that Adam's second moments stay non-negative."""
    def resized(value: Any, parameter: Tensor) -> Any:
        if isinstance(value, Tensor) and value.dim() == 4 and value.shape != parameter.shape:
            return F.interpolate(value, size=parameter.shape[-2:], mode="bilinear", align_corners=False)
        return value

    return {**state, "state": {index: {key: resized(value, like[index]) for key, value in values.items()}
                               for index, values in state["state"].items()}}
