"""Colour preservation (Gatys et al., "Preserving Color in Neural Artistic Style Transfer", 2016).

- luminance: style transfer on luminance only (Y of YIQ); the content's chroma (I, Q) is put
  back on the result. The style's luminance is first matched to the content's mean and std.
- histogram: the style image's colours are matched to the content's mean and covariance
  (x' = Sc^1/2 Ss^-1/2 (x - ms) + mc) before an ordinary transfer.
"""

import torch
from torch import Tensor

from nst_research.errors import UserInputError
from nst_research.nst.losses import sqrtm_psd

PRESERVE_COLOR = ("none", "luminance", "histogram")

# NTSC YIQ from RGB; rows Y, I, Q.
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def rgb_to_yiq(image: Tensor) -> Tensor:
    return torch.einsum("ij,bjhw->bihw", RGB_TO_YIQ.to(image), image)


def yiq_to_rgb(image: Tensor) -> Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(RGB_TO_YIQ).to(image), image)


def luminance(image: Tensor) -> Tensor:
    """The Y channel, repeated to three channels so the RGB feature network can take it."""
    return rgb_to_yiq(image)[:, :1].expand(-1, 3, -1, -1).contiguous()


def match_luminance(style: Tensor, content: Tensor) -> Tensor:
    """Style luminance image shifted and scaled to the content luminance's mean and std."""
    s, c = luminance(style), luminance(content)
    return ((s - s.mean()) / (s.std() + 1e-8) * c.std() + c.mean()).clamp(0, 1)


def with_chroma(image: Tensor, chroma_source: Tensor) -> Tensor:
    """`image`'s luminance combined with `chroma_source`'s I and Q channels, back in RGB."""
    y = rgb_to_yiq(image)[:, :1]
    iq = rgb_to_yiq(chroma_source)[:, 1:]
    return yiq_to_rgb(torch.cat([y, iq], dim=1))


def color_statistics(image: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (3,) and covariance (3, 3) of the pixel colours of a (1, 3, H, W) image."""
    pixels = image.flatten(2)[0].double()
    mean = pixels.mean(1)
    centred = pixels - mean[:, None]
    return mean, centred @ centred.T / pixels.shape[1]


def match_color(style: Tensor, content: Tensor, eps: float = 1e-8) -> Tensor:
    """The style's colours given the content's mean and covariance (unclamped)."""
    style_mean, style_cov = color_statistics(style)
    content_mean, content_cov = color_statistics(content)
    identity = torch.eye(3, dtype=torch.float64)
    style_root_inv = torch.linalg.inv(sqrtm_psd(style_cov + eps * identity))
    transform = sqrtm_psd(content_cov + eps * identity) @ style_root_inv
    pixels = style.flatten(2)[0].double()
    matched = transform @ (pixels - style_mean[:, None]) + content_mean[:, None]
    return matched.reshape(style.shape).to(style.dtype)


def check_preserve_color(mode: str) -> None:
    if mode not in PRESERVE_COLOR:
        raise UserInputError(f"unknown preserve_color {mode!r}; choose one of {PRESERVE_COLOR}")
