"""Everything a style transfer optimises against, read and checked from the config before any output."""

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import Tensor

from nst_research.errors import UserInputError
from nst_research.nst.color import check_preserve_color, luminance, match_color, match_luminance
from nst_research.nst.images import MIN_IMAGE_SIZE, initial_image, load_image, load_mask
from nst_research.nst.styles import blend_weights, check_masks, style_list


@dataclass
class StyleTransferInputs:
    content: Tensor             # as the network sees it (luminance only with preserve_color=luminance)
    styles: list[Tensor]
    blend: list[float]          # one weight per style, summing to 1
    masks: list[Tensor] | None  # one content-sized region per style, or None
    chroma: Tensor | None       # the RGB content whose chroma goes back on the output, or None
    init: Tensor


def prepare_inputs(cfg: DictConfig) -> StyleTransferInputs:
    """Load content, styles and masks at the run's sizes, apply colour preservation, make the start image."""
    content = load_image(cfg.content, cfg.image_size, cfg.max_megapixels)
    style_size = round(cfg.image_size * cfg.style_scale)
    if not cfg.style_scale > 0 or style_size < MIN_IMAGE_SIZE:
        raise UserInputError(f"style_scale={cfg.style_scale} gives style images of {style_size} px; "
                             f"use a style_scale that keeps them >= {MIN_IMAGE_SIZE} px")
    styles = [load_image(spec, style_size, cfg.max_megapixels) for spec in style_list(cfg.style)]
    mask_specs = check_masks(cfg.masks, len(styles), cfg.style_blend)
    blend = blend_weights(len(styles), cfg.style_blend)
    masks = None if mask_specs is None else [load_mask(spec, tuple(content.shape[-2:]), cfg.max_megapixels) for spec in mask_specs]
    check_preserve_color(cfg.preserve_color)
    chroma = None
    if cfg.preserve_color == "histogram":
        styles = [match_color(style, content).clamp(0, 1) for style in styles]
    elif cfg.preserve_color == "luminance":
        chroma = content
        styles = [match_luminance(style, content) for style in styles]
        content = luminance(content)
    init = initial_image(cfg.init, content, styles[0], torch.Generator().manual_seed(cfg.seed), cfg.max_megapixels)
    if chroma is not None:
        init = luminance(init)
    return StyleTransferInputs(content, styles, blend, masks, chroma, init)
