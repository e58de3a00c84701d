"""What the optimizer steps: the image as a function of trainable tensors.

Gatys et al. optimise the pixels. A linear change of variables keeps the objective and the
optimum (the image is the same function of the same pixels) but changes the steps an optimizer
takes to reach it, as a preconditioner does: a Laplacian pyramid or a 1/f-scaled spectrum lets a
step move coarse structure as far as fine detail (Olah et al., "Feature Visualization", Distill
2017). Each parameterization is an `nn.Module`: `forward()` gives the image, `assign(image)` sets
the tensors so that `forward()` returns that image (the clamp to [0, 1] after each step is done on
the image and assigned back).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nst_research.errors import UserInputError, check_nonnegative


class ImageParameterization(nn.Module):
    """The image (1 or B, C, H, W) as a function of this module's parameters.

    `resizable`: every parameter is image-like (B, C, h, w), so optimizer state can be resized
    with it from one scale to the next."""

    resizable = False

    def forward(self) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def assign(self, image: Tensor) -> None:
        raise NotImplementedError


class Pixels(ImageParameterization):
    """The pixels themselves (Gatys et al.)."""

    resizable = True

    def __init__(self, image: Tensor) -> None:
        super().__init__()
        self.pixels = nn.Parameter(image.clone(memory_format=torch.contiguous_format))  # L-BFGS needs view(-1)

    def forward(self) -> Tensor:
        return self.pixels

    @torch.no_grad()
    def assign(self, image: Tensor) -> None:
        self.pixels.copy_(image)


def half(image: Tensor) -> Tensor:
    """`image` at half its height and width (rounded up), by 2x2 averages."""
    return F.avg_pool2d(image, 2, ceil_mode=True)


def resize(image: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(image, size=like.shape[-2:], mode="bilinear", align_corners=False)


class LaplacianPyramid(ImageParameterization):
    """The image as a Laplacian pyramid (Burt and Adelson, 1983): `levels` tensors, each half the size of the
    one before, the last a small image and the others the detail each size adds. The image is the sum of
    them all, upsampled, level k weighted by `level_weight**k`. A step on a coarse level moves a whole region
    of the image at once; its gradient sums its region's, about 4x per level, which `level_weight=0.5`
    halves again per level."""

    resizable = True

    def __init__(self, image: Tensor, levels: int = 4, level_weight: float = 0.5) -> None:
        super().__init__()
        if not isinstance(levels, int) or isinstance(levels, bool) or levels < 1:
            raise UserInputError(f"parameterization.levels={levels} must be an integer >= 1")
        check_nonnegative(**{"parameterization.level_weight": level_weight})
        if level_weight == 0:
            raise UserInputError("parameterization.level_weight=0 must be > 0 (level k enters as level_weight**k)")
        self.weights = [level_weight**k for k in range(levels)]
        self.levels = nn.ParameterList(nn.Parameter(level) for level in self.decompose(image))

    def decompose(self, image: Tensor) -> list[Tensor]:
        out = []
        for weight in self.weights[:-1]:
            smaller = half(image)
            out.append(((image - resize(smaller, image)) / weight).contiguous())
            image = smaller
        return [*out, (image / self.weights[-1]).contiguous()]

    def forward(self) -> Tensor:
        image = self.levels[-1] * self.weights[-1]
        for detail, weight in zip(reversed(self.levels[:-1]), reversed(self.weights[:-1])):
            image = resize(image, detail) + detail * weight
        return image

    @torch.no_grad()
    def assign(self, image: Tensor) -> None:
        for level, value in zip(self.levels, self.decompose(image)):
            level.copy_(value)


# The square root of ImageNet's colour covariance (as in Lucid), columns scaled to at most unit norm: its
# columns are decorrelated colour directions, brightness first.
IMAGENET_COLOR_ROOT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])


class Spectrum(ImageParameterization):
    """The image's 2-D Fourier spectrum, each frequency f scaled by 1/f**decay (a larger step for lower
    frequencies, fine detail moving least), optionally in decorrelated colours (Olah et al., 2017)."""

    def __init__(self, image: Tensor, decay: float = 0.5, decorrelate_colors: bool = False) -> None:
        super().__init__()
        check_nonnegative(**{"parameterization.decay": decay})
        height, width = image.shape[-2:]
        fy = torch.fft.fftfreq(height)[:, None]
        fx = torch.fft.rfftfreq(width)[None, :]
        frequency = torch.sqrt(fx**2 + fy**2).clamp(min=1 / max(height, width))
        scale = frequency ** -decay
        self.register_buffer("scale", (scale / scale.max()).to(image), persistent=False)
        colors = IMAGENET_COLOR_ROOT / IMAGENET_COLOR_ROOT.norm(dim=0).max() if decorrelate_colors else torch.eye(3)
        self.register_buffer("colors", colors.to(image), persistent=False)
        self.register_buffer("uncolors", torch.linalg.inv(colors).to(image), persistent=False)
        self.size = (height, width)
        self.spectrum = nn.Parameter(self.analyse(image))

    def analyse(self, image: Tensor) -> Tensor:
        decorrelated = torch.einsum("ij,bjhw->bihw", self.uncolors, image)
        return torch.view_as_real(torch.fft.rfft2(decorrelated, norm="ortho") / self.scale).contiguous()

    def forward(self) -> Tensor:
        decorrelated = torch.fft.irfft2(torch.view_as_complex(self.spectrum) * self.scale, s=self.size, norm="ortho")
        return torch.einsum("ij,bjhw->bihw", self.colors, decorrelated)

    @torch.no_grad()
    def assign(self, image: Tensor) -> None:
        self.spectrum.copy_(self.analyse(image))

