"""`StyleTransferObjective`: the weighted content + style + TV loss of an image, targets held as buffers."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nst_research.errors import UserInputError, check_nonnegative
from nst_research.features import VGGFeatures
from nst_research.nst.losses import CONTENT_REDUCTIONS, content_loss, style_loss, tv_loss
from nst_research.nst.style_losses import blend_statistics, make_style_loss


class Targets(nn.Module):
    """Named target tensors held as buffers, so they move with the module to its device."""

    def __init__(self, tensors: dict[str, Tensor]):
        super().__init__()
        for name, tensor in tensors.items():
            self.register_buffer(name, tensor, persistent=False)

    def as_dict(self) -> dict[str, Tensor]:
        return dict(self.named_buffers())


def layer_weights(kind: str, layers: Sequence[str], weights: Sequence[float] | None) -> dict[str, float]:
    """Pair `layers.<kind>` names with `layers.<kind>_weights` (equal weights summing to 1 when None)."""
    names = [layers] if isinstance(layers, str) else list(layers)
    if weights is None:
        return {name: 1.0 / len(names) for name in names} if names else {}
    weights = list(weights)
    if len(weights) != len(names):
        raise UserInputError(f"layers.{kind} has {len(names)} layer(s) but layers.{kind}_weights has {len(weights)}; "
                             f"give one weight per layer, or layers.{kind}_weights=null for equal weights")
    return dict(zip(names, weights))


def element_weights(**weights: float | Sequence[float]) -> list[dict[str, float]]:
    """Loss weights per batch element, e.g. content=1.0, style=[1e4, 1e5] -> [{content: 1.0, style: 1e4}, ...]:
    each weight is a number (shared) or a list with one value per element."""
    columns = {term: [w] if isinstance(w, str) or not isinstance(w, Sequence) else list(w) for term, w in weights.items()}
    size = max(len(column) for column in columns.values())
    if any(len(column) not in (1, size) for column in columns.values()):
        raise UserInputError(f"loss weights per element must have equal lengths, or one value: {weights}")
    return [{term: column[0] if len(column) == 1 else column[b] for term, column in columns.items()}
            for b in range(size)]


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


class StyleTransferObjective(nn.Module):
    """Gatys et al.'s objective: alpha * content + beta * sum_l w_l style_l + gamma * TV.

    The style term per layer is the named `style_loss` (Gram MSE by default).

    `set_targets` computes content features and style targets once, without gradients;
    `forward` returns every term (total, content, style, tv, and style per layer) so each
    can be logged. Each loss weight may also be a list, one value per image of a batch:
    `element_losses` then gives each image's terms with its own weights (a batched sweep).
    """

    def __init__(self, features: VGGFeatures, content_layers: dict[str, float], style_layers: dict[str, float],
                 content_weight: float | Sequence[float] = 1.0, style_weight: float | Sequence[float] = 1e6,
                 tv_weight: float | Sequence[float] = 0.0,
                 gram_normalization: str = "chw", content_reduction: str = "mean", style_loss: str = "gram",
                 normalize_gradients: bool = False):
        super().__init__()
        self.weights = element_weights(content=content_weight, style=style_weight, tv=tv_weight)
        for weights in self.weights:
            check_nonnegative(**{f"{term}_weight": weight for term, weight in weights.items()})
        check_nonnegative(**{f"layers.content.{k}": v for k, v in content_layers.items()},
                          **{f"layers.style.{k}": v for k, v in style_layers.items()})
        self.style_loss = make_style_loss(style_loss, gram_normalization)
        if content_reduction not in CONTENT_REDUCTIONS:
            raise UserInputError(f"unknown content_reduction {content_reduction!r}; choose one of {CONTENT_REDUCTIONS}")
        self.features = features
        self.content_layers, self.style_layers = dict(content_layers), dict(style_layers)
        self.content_reduction = content_reduction
        self.normalize_gradients = normalize_gradients

    @torch.no_grad()
    def set_targets(self, content: Tensor, styles: Sequence[Tensor], blend: Sequence[float],
                    masks: Sequence[Tensor] | None = None) -> None:
        """Content features and style targets, computed once.

        Without masks the style targets are the `blend`-weighted mean of each style's
        statistics. With masks (one per style, content-sized, in [0, 1]) each style keeps its
        own targets and is matched only inside its region, the mask resized to each layer.
        """
        content_features = self.features(content)
        style_features = [self.features(style) for style in styles]
        self.content_targets = nn.ModuleDict({layer: Targets({"features": content_features[layer]})
                                              for layer in self.content_layers})
        statistics = {layer: [self.style_loss.statistics(features[layer]) for features in style_features]
                      for layer in self.style_layers}
        if masks is None:
            self.style_targets = nn.ModuleDict({
                layer: Targets(self.style_loss.targets(blend_statistics(statistics[layer], blend)))
                for layer in self.style_layers})
            self.layer_masks = None
            return
        self.style_targets = nn.ModuleDict({
            f"{layer}__{i}": Targets(self.style_loss.targets(stats))
            for layer in self.style_layers for i, stats in enumerate(statistics[layer])})
        self.layer_masks = Targets({
            layer: torch.cat([F.interpolate(mask, size=content_features[layer].shape[-2:], mode="area")
                              for mask in masks])
            for layer in self.style_layers})

    def style_regions(self, layer: str) -> list[tuple[dict[str, Tensor], Tensor | None]]:
        """(targets, mask) for each region of `layer`: one unmasked region without masks."""
        if self.layer_masks is None:
            return [(self.style_targets[layer].as_dict(), None)]
        masks = getattr(self.layer_masks, layer)
        return [(self.style_targets[f"{layer}__{i}"].as_dict(), masks[i:i + 1]) for i in range(len(masks))]

    def regions_loss(self, features: Tensor, regions: list[tuple[dict[str, Tensor], Tensor | None]]) -> Tensor:
        """The style loss of one layer summed over its regions."""
        return sum((self.style_loss(features, targets, mask) for targets, mask in regions), features.new_zeros(()))

    @staticmethod
    def with_normalized_gradients(features: dict[str, Tensor], layers: dict[str, float], weight: float) -> dict[str, Tensor]:
        return {layer: NormalizeGradient.apply(features[layer], weight * layer_weight)
                for layer, layer_weight in layers.items()}

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """Every term of one image (a batch of one, with one set of loss weights)."""
        (losses,) = self.element_losses(image)
        return losses

    def element_losses(self, images: Tensor) -> list[dict[str, Tensor]]:
        """Every term of each image of a batch, image b weighted by `weights[b]` (a batched sweep).

        The feature network runs once over the batch; each image's terms are computed on its own slice
        of the features, so they depend on its pixels only, and the gradient of the sum of the totals is,
        image by image, the gradient of a separate run.
        """
        if len(images) != len(self.weights):
            raise ValueError(f"{len(images)} images for {len(self.weights)} sets of loss weights")
        features = self.features(images)
        return [self.terms(images[b:b + 1], {layer: f[b:b + 1] for layer, f in features.items()}, weights)
                for b, weights in enumerate(self.weights)]

    def terms(self, image: Tensor, features: dict[str, Tensor], weights: dict[str, float]) -> dict[str, Tensor]:
        """The weighted terms of one image from its features."""
        content_features, style_features = features, features
        if self.normalize_gradients:
            content_features = self.with_normalized_gradients(features, self.content_layers, weights["content"])
            style_features = self.with_normalized_gradients(features, self.style_layers, weights["style"])
        content = sum(
            (weight * content_loss(content_features[layer], self.content_targets[layer].features, self.content_reduction)
             for layer, weight in self.content_layers.items()),
            image.new_zeros(()),
        )
        regions = {layer: self.style_regions(layer) for layer in self.style_layers}
        style, per_layer = style_loss(style_features, regions, self.style_layers, self.regions_loss)
        tv = tv_loss(image)
        total = weights["content"] * content + weights["style"] * style + weights["tv"] * tv
        losses = {"total": total, "content": content, "style": style, "tv": tv}
        losses.update({f"style/{layer}": loss for layer, loss in per_layer.items()})
        return losses
