"""Several style images with blend weights: `style=[a.jpg,b.jpg] style_blend=[0.7,0.3]`."""

from collections.abc import Sequence

from nst_research.errors import UserInputError, check_nonnegative


def style_list(style: str | Sequence[str]) -> list[str]:
    """`style` as a list of image specs (a single name or path is a list of one)."""
    styles = [style] if isinstance(style, str) else list(style)
    if not styles:
        raise UserInputError("style=[] names no style image; give a path or sample name")
    return styles


def blend_weights(count: int, blend: Sequence[float] | None) -> list[float]:
    """Blend weights for `count` styles, normalised to sum to 1; equal when `blend` is None."""
    if blend is None:
        return [1.0 / count] * count
    weights = [float(w) for w in blend]
    if len(weights) != count:
        raise UserInputError(f"style_blend has {len(weights)} weights for {count} style image(s); give one per style")
    check_nonnegative(**{f"style_blend[{i}]": w for i, w in enumerate(weights)})
    if sum(weights) <= 0:
        raise UserInputError(f"style_blend={weights} must not be all 0")
    return [w / sum(weights) for w in weights]


def check_masks(masks: Sequence[str] | None, style_count: int, blend: Sequence[float] | None) -> list[str] | None:
    """`masks` as a list with one mask per style, or None."""
    if masks is None:
        return None
    masks = [masks] if isinstance(masks, str) else list(masks)
    if len(masks) != style_count:
        raise UserInputError(f"masks has {len(masks)} mask(s) for {style_count} style image(s); "
                             "give one mask per style")
    if blend is not None:
        raise UserInputError("style_blend does not apply with masks (each style has its own region); "
                             "set style_blend=null")
    return masks
