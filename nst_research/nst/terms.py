"""The terms of a style-transfer objective, each a small module built from a `_target_` node.

A term reads the feature layers it names, holds its targets as buffers, and returns its unweighted
value (and named parts, such as the style loss of each layer, to log). Its `weight` multiplies it
in the total: a number, or one number per image of a batched sweep. `StyleTransferObjective` sums
the terms it is given; a new term is a subclass of `LossTerm` and a YAML node in `conf/term/`.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nst_research.errors import UserInputError, check_nonnegative
from nst_research.nst.losses import content_loss, tv_loss
from nst_research.nst.style_losses import StyleLoss

Weight = float | Sequence[float]


def pair_layer_weights(kind: str, layers: str | Sequence[str], weights: Sequence[float] | None) -> dict[str, float]:
    """Pair the `layers.<kind>` names with `layers.<kind>_weights` (equal weights summing to 1 when None)."""
    names = [layers] if isinstance(layers, str) else list(layers)
    if weights is None:
        return {name: 1.0 / len(names) for name in names} if names else {}
    weights = list(weights)
    if len(weights) != len(names):
        raise UserInputError(f"layers.{kind} has {len(names)} layer(s) but layers.{kind}_weights has {len(weights)}; "
                             f"give one weight per layer, or layers.{kind}_weights=null for equal weights")
    check_nonnegative(**{f"layers.{kind}.{name}": w for name, w in zip(names, weights)})
    return dict(zip(names, weights))


def weights_list(weight: Weight) -> list[float]:
    """A term's weight as a list: one value (shared by every image) or one per image of a batch."""
    return [weight] if isinstance(weight, int | float) else list(weight)


class NormalizeGradient(torch.autograd.Function):
    """Identity forward; backward rescales the incoming gradient to L1 norm `strength`.

    jcjohnson/neural-style's -normalize_gradients: each loss term's gradient at its layer is
    divided by its L1 norm, then multiplied by the term's weight.
    """

    @staticmethod
    def forward(ctx, features: Tensor, strength: float) -> Tensor:
        ctx.strength = strength
        return features.view_as(features)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad / (grad.abs().sum() + 1e-8) * ctx.strength, None


class LossTerm(nn.Module):
    """One weighted term. `layers` maps the feature layers it reads to their weights within the term.

    Subclasses set their targets in `set_content` (the content image's features) and `set_styles`
    (each style image's features), and compute `value`. With `normalize_gradients`, the gradient
    reaching each of its layers is rescaled to L1 norm weight * layer weight (`NormalizeGradient`).
    """

    def __init__(self, weight: Weight, layers: dict[str, float] | None = None, normalize_gradients: bool = False,
                 name: str = "term"):
        super().__init__()
        self.weights = weights_list(weight)
        check_nonnegative(**{f"{name}_weight": w for w in self.weights})
        self.layers = dict(layers or {})
        self.normalize_gradients = normalize_gradients

    def set_content(self, features: dict[str, Tensor]) -> None:
        """The content image's features (of every layer any term reads), computed without gradients."""

    def set_styles(self, features: list[dict[str, Tensor]], blend: list[float], masks: list[Tensor] | None) -> None:
        """Each style image's features, their blend weights, and one content-sized mask per style or None."""

    def value(self, image: Tensor, features: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The unweighted term of `image` from its features, and named parts to log."""
        raise NotImplementedError

    def forward(self, image: Tensor, features: dict[str, Tensor], weight: float) -> tuple[Tensor, dict[str, Tensor]]:
        if self.normalize_gradients:
            features = {layer: NormalizeGradient.apply(features[layer], weight * layer_weight)
                        for layer, layer_weight in self.layers.items()}
        return self.value(image, features)


class ContentTerm(LossTerm):
    """Gatys et al. eq. 1: squared error between the image's and the content's features, summed over layers."""

    def __init__(self, layers: Sequence[str], layer_weights: Sequence[float] | None = None, weight: Weight = 1.0,
                 reduction: str = "mean", normalize_gradients: bool = False):
        super().__init__(weight, pair_layer_weights("content", layers, layer_weights), normalize_gradients,
                         name="content")
        if reduction not in ("mean", "half_sum"):
            raise UserInputError(f"unknown content_reduction {reduction!r}; choose mean or half_sum")
        self.reduction = reduction

    def set_content(self, features: dict[str, Tensor]) -> None:
        for layer in self.layers:
            self.register_buffer(f"target_{layer}", features[layer], persistent=False)

    def value(self, image: Tensor, features: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        total = sum((w * content_loss(features[layer], getattr(self, f"target_{layer}"), self.reduction)
                     for layer, w in self.layers.items()), image.new_zeros(()))
        return total, {}


class StyleTerm(LossTerm):
    """Gatys et al. eq. 5: sum over layers of w_l * loss(F_l, target_l), the per-layer `loss` a `StyleLoss`.

    Without masks the targets are the blend of the styles' statistics (`loss.blend`). With masks (one
    per style) each style keeps its own targets and is matched only inside its region, the mask
    resized to each layer (Gatys et al. 2017, spatial control).
    """

    def __init__(self, loss: StyleLoss, layers: Sequence[str], layer_weights: Sequence[float] | None = None,
                 weight: Weight = 1e6, normalize_gradients: bool = False):
        super().__init__(weight, pair_layer_weights("style", layers, layer_weights), normalize_gradients,
                         name="style")
        self.loss = loss
        self.regions = nn.ModuleList()  # per region: {layer: its targets, as buffers}
        self.masks: Buffers | None = None  # per region: its content-sized mask

    def set_styles(self, features: list[dict[str, Tensor]], blend: list[float], masks: list[Tensor] | None) -> None:
        statistics = {layer: [self.loss.statistics(f[layer]) for f in features] for layer in self.layers}
        if masks is None:
            regions = [{layer: self.loss.targets(self.loss.blend(stats, blend)) for layer, stats in statistics.items()}]
        else:
            regions = [{layer: self.loss.targets(stats[i]) for layer, stats in statistics.items()}
                       for i in range(len(masks))]
        self.regions = nn.ModuleList(nn.ModuleDict({layer: Buffers(t) for layer, t in region.items()})
                                     for region in regions)
        self.masks = None if masks is None else Buffers({f"mask_{i}": mask for i, mask in enumerate(masks)})

    def region_mask(self, i: int, features: Tensor) -> Tensor | None:
        """Region i's mask at the size of `features` (None without masks)."""
        if self.masks is None:
            return None
        return F.interpolate(getattr(self.masks, f"mask_{i}"), size=features.shape[-2:], mode="area")

    def value(self, image: Tensor, features: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        per_layer = {}
        for layer in self.layers:
            f = features[layer]
            per_layer[layer] = sum((self.loss(f, region[layer].as_dict(), self.region_mask(i, f))
                                    for i, region in enumerate(self.regions)), f.new_zeros(()))
        total = sum((self.layers[layer] * loss for layer, loss in per_layer.items()), image.new_zeros(()))
        return total, per_layer


class TVTerm(LossTerm):
    """Total variation of the image (both directions, one weight): smooths high-frequency noise."""

    def __init__(self, weight: Weight = 0.0):
        super().__init__(weight, name="tv")

    def value(self, image: Tensor, features: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        return tv_loss(image), {}


class Buffers(nn.Module):
    """Named tensors held as buffers, so they move with the module to its device."""

    def __init__(self, tensors: dict[str, Tensor]):
        super().__init__()
        for name, tensor in tensors.items():
            self.register_buffer(name, tensor, persistent=False)

    def as_dict(self) -> dict[str, Tensor]:
        return dict(self.named_buffers())
