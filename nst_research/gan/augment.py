"""Differentiable augmentation of every image the discriminator sees, real and generated (Zhao et al.,
2020, "Differentiable Augmentation for Data-Efficient GAN Training"): the same random transforms on both,
made of differentiable operations so that the generator's gradient passes through them. With little
data the discriminator then cannot memorise the real images, and the generator is not taught the
augmentations (they are applied to its samples too, never to what it outputs).

The transforms follow the authors' reference code (mit-han-lab/data-efficient-gans, `DiffAugment_pytorch.py`),
on images in [-1, 1]: `color` (brightness, saturation and contrast, each a random factor per image),
`translation` (a shift of up to 1/8 of the size, zero padding) and `cutout` (a zeroed square of half
the size at a random place). `gan.augment=diffaugment` picks it (conf/gan/augment/diffaugment.yaml).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def per_image(x: Tensor) -> Tensor:
    """A uniform random number in [0, 1) for each image, shaped to broadcast over it."""
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)


def brightness(x: Tensor) -> Tensor:
    return x + (per_image(x) - 0.5)


def saturation(x: Tensor) -> Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (per_image(x) * 2) + mean


def contrast(x: Tensor) -> Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (per_image(x) + 0.5) + mean


def pixel_grid(x: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Index tensors (batch, height, width) of image, row and column."""
    return torch.meshgrid(*(torch.arange(n, device=x.device) for n in (x.shape[0], height, width)), indexing="ij")


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to `ratio` of its size in each direction, filling with zeros."""
    n, _, height, width = x.shape
    shift = [int(size * ratio + 0.5) for size in (height, width)]
    dy = torch.randint(-shift[0], shift[0] + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-shift[1], shift[1] + 1, (n, 1, 1), device=x.device)
    image, row, column = pixel_grid(x, height, width)
    row = (row + dy + 1).clamp(0, height + 1)  # +1: indices into the zero-padded image
    column = (column + dx + 1).clamp(0, width + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    return padded[image, row, column].permute(0, 3, 1, 2)


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero a square of `ratio` of each image's size centred at a random place (clipped at the border)."""
    n, _, height, width = x.shape
    size = [int(side * ratio + 0.5) for side in (height, width)]
    y0 = torch.randint(0, height + (1 - size[0] % 2), (n, 1, 1), device=x.device)
    x0 = torch.randint(0, width + (1 - size[1] % 2), (n, 1, 1), device=x.device)
    image, row, column = pixel_grid(x, *size)
    row = (row + y0 - size[0] // 2).clamp(0, height - 1)
    column = (column + x0 - size[1] // 2).clamp(0, width - 1)
    mask = torch.ones(n, height, width, dtype=x.dtype, device=x.device)
    mask[image, row, column] = 0
    return x * mask.unsqueeze(1)


TRANSFORMS = {"color": (brightness, saturation, contrast), "translation": (translation,), "cutout": (cutout,)}


class DiffAugment(nn.Module):
    """The transforms of `policy` (any of color, translation, cutout, in that order as the authors apply
    them), with fresh randomness on every call; differentiable with respect to the images."""

    def __init__(self, policy: list[str] | tuple[str, ...] = ("color", "translation", "cutout")) -> None:
        super().__init__()
        unknown = [name for name in policy if name not in TRANSFORMS]
        if unknown or not policy:
            raise ValueError(f"DiffAugment policy {list(policy)}: choose from {', '.join(TRANSFORMS)}")
        self.policy = list(policy)

    def forward(self, x: Tensor) -> Tensor:
        for name in self.policy:
            for transform in TRANSFORMS[name]:
                x = transform(x)
        return x.contiguous()
