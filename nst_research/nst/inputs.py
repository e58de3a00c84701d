"""Everything a style transfer optimises against, loaded and checked before any output is written."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nst_research.errors import UserInputError
from nst_research.nst.color import check_preserve_color, luminance, match_color, match_luminance
from nst_research.nst.images import initial_image, load_image, load_mask
from nst_research.nst.sources import MIN_IMAGE_SIZE
from nst_research.nst.styles import blend_weights, check_masks, style_list


@dataclass
class StyleTransferInputs:
    content: Tensor             # as the network sees it (luminance only with preserve_color=luminance)
    styles: list[Tensor]
    blend: list[float]          # one weight per style, summing to 1
    masks: list[Tensor] | None  # one content-sized region per style, or None
    chroma: Tensor | None       # the RGB content whose chroma goes back on the output, or None
    init: Tensor
    original_content: Tensor    # the content in RGB, before colour preservation (what the judge compares with)
    original_styles: list[Tensor]  # the styles at the content's long side whatever style_scale, not colour-matched

    def judged(self) -> tuple[Tensor, list[Tensor], list[float], list[Tensor] | None]:
        """What the judge's reference is made of: the inputs as the user gave them, the blend and the masks."""
        return self.original_content, self.original_styles, self.blend, self.masks


def prepare_inputs(content: str, style: str | Sequence[str], image_size: int, *, style_scale: float = 1.0,
                   masks: str | Sequence[str] | None = None, style_blend: Sequence[float] | None = None,
                   preserve_color: str = "none", init: str = "content", seed: int = 0,
                   max_megapixels: float = 100.0) -> StyleTransferInputs:
    """Load content, styles and masks at `image_size`, apply colour preservation, make the start image.
    The arguments are the config keys of the same names."""
    content_image = load_image(content, image_size, max_megapixels)
    style_size = round(image_size * style_scale)
    if not style_scale > 0 or style_size < MIN_IMAGE_SIZE:
        raise UserInputError(f"style_scale={style_scale} gives style images of {style_size} px; "
                             f"use a style_scale that keeps them >= {MIN_IMAGE_SIZE} px")
    styles = [load_image(spec, style_size, max_megapixels) for spec in style_list(style)]
    originals = styles if style_size == image_size else [load_image(spec, image_size, max_megapixels)
                                                          for spec in style_list(style)]
    mask_specs = check_masks(masks, len(styles), style_blend)
    blend = blend_weights(len(styles), style_blend)
    size = tuple(content_image.shape[-2:])
    mask_images = None if mask_specs is None else [load_mask(spec, size, max_megapixels) for spec in mask_specs]
    check_preserve_color(preserve_color)
    original_content, chroma = content_image, None
    if preserve_color == "histogram":
        styles = [match_color(image, content_image).clamp(0, 1) for image in styles]
    elif preserve_color == "luminance":
        chroma = content_image
        styles = [match_luminance(image, content_image) for image in styles]
        content_image = luminance(content_image)
    start = initial_image(init, content_image, styles[0], torch.Generator().manual_seed(seed), max_megapixels)
    if chroma is not None:
        start = luminance(start)
    return StyleTransferInputs(content_image, styles, blend, mask_images, chroma, start, original_content, originals)
