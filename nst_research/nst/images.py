"""Image I/O: any image Pillow opens becomes an RGB tensor in [0, 1]; results are saved atomically.

Where an image comes from (a sample name or a file) is `nst_research.nst.sources`.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms import functional as TF

from nst_research.atomic import write_atomic
from nst_research.errors import UserInputError
from nst_research.nst.sources import MAX_MEGAPIXELS, MIN_IMAGE_SIZE, check_megapixels, resolve_image

__all__ = ["MIN_IMAGE_SIZE", "initial_image", "load_image", "load_mask", "save_image", "to_rgb"]

def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB: EXIF rotation applied, alpha composited on white, 16-bit rescaled."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)  # 16-bit samples, 0..65535
        image = Image.fromarray((array / 65535.0 * 255).round().clip(0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def load_image(spec: str, long_side: int | None = None, max_megapixels: float = MAX_MEGAPIXELS) -> Tensor:
    """Read an image file or sample name as a (1, 3, H, W) float tensor in [0, 1].

    With `long_side`, resize (antialiased) so the longer side has that many pixels, keeping
    the aspect ratio. Files over `max_megapixels` are refused before they are decoded.
    """
    path = resolve_image(spec)
    try:
        with Image.open(path) as opened:
            check_megapixels(spec, opened.size, max_megapixels)
            opened.load()
            image = to_rgb(opened)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise UserInputError(f"cannot read image {spec!r} ({error}); give a PNG, JPEG or other image file") from None
    if long_side is not None:
        w, h = image.size
        scale = long_side / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return TF.to_tensor(image).unsqueeze(0)


def save_image(image: Tensor, path: Path) -> None:
    """Save a (1, 3, H, W) or (3, H, W) tensor, clamped to [0, 1], as PNG: temporary file, then rename."""
    pil = TF.to_pil_image(image.detach().squeeze(0).clamp(0, 1).cpu())
    write_atomic(path, lambda f: pil.save(f, format="PNG"))


def initial_image(init: str, content: Tensor, style: Tensor, generator: torch.Generator | None = None,
                  max_megapixels: float = MAX_MEGAPIXELS) -> Tensor:
    """The starting image: the content, uniform noise, the (first) style, or an image file or
    sample name, each resized to the content's size."""
    if init == "content":
        return content.clone()
    if init == "noise":
        return torch.rand(content.shape, generator=generator)
    if init == "style":
        image = style
    else:
        try:
            image = load_image(init, max_megapixels=max_megapixels)
        except UserInputError as error:
            raise UserInputError(f"init={init}: {error}; or use init=content, noise or style") from None
    return TF.resize(image, list(content.shape[-2:]), antialias=True).clamp(0, 1)


def load_mask(spec: str, size: tuple[int, int], max_megapixels: float = MAX_MEGAPIXELS) -> Tensor:
    """A region mask as a (1, 1, H, W) tensor in [0, 1] (white = inside), resized to `size` (H, W).

    Grey levels are partial membership; a mask in colour is refused (which channel would count?)."""
    path = resolve_image(spec)
    try:
        with Image.open(path) as opened:
            check_megapixels(spec, opened.size, max_megapixels)
            rgb = np.asarray(to_rgb(opened), dtype=np.int16)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise UserInputError(f"cannot read mask {spec!r} ({error}); give a black-and-white image file") from None
    if np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max() > 8:
        raise UserInputError(f"mask {spec!r} is in colour; give a black-and-white (grayscale) image, "
                             "white where its style goes")
    mask = Image.fromarray(rgb[..., 0].astype(np.uint8), "L")
    mask = mask.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return TF.to_tensor(mask).unsqueeze(0)
