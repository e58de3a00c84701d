"""A fixed judge of style-transfer results, independent of the objective a run optimised.

A run's total loss changes meaning with the very settings a sweep varies (loss weights, style loss,
layers, network), so runs are compared on the judge's numbers instead. The judge has its own network,
layers, statistics and seeded random projections, set in its own config node (`conf/judge/`); nothing a
run overrides in its objective changes what it measures.

`FeatureJudge` scores an image against a content image and one or more style images (blended, or each in
its region with masks):

- content: how far the image's deep features are from the content's (`relative_feature_error`, averaged
  over fixed layers), and the SSIM of luminance (torchmetrics), a structural measure with no network;
- style: how far the image's feature distributions are from the style's (`sliced_wasserstein` with fixed
  projections, averaged over fixed layers), and the same distance between RGB colour distributions.

Each distance is given raw and relative to a reference that makes it read alike on any pair: content
relative to the style image's own distance from the content, style and colour relative to the unstylised
content's distance from the style. So the content image scores content 0 and style 1, the style image
about content 1 and style 0. A VGG-based judge favours VGG-based objectives: compare runs with it, and
look at the pictures.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

from nst_research.errors import UserInputError
from nst_research.judge.distances import (
    positions,
    projected_quantiles,
    quantile_levels,
    relative_feature_error,
    sliced_wasserstein,
)

# ITU-R BT.601 luma weights: SSIM compares structure in luminance, not colour
LUMA = (0.299, 0.587, 0.114)


@dataclass
class Style:
    """One style image as the judge compares with it: its quantiles per layer and of its colours, and the
    weight of its term (its blend weight, or its region's share of the image with masks)."""

    weight: float
    quantiles: dict[str, Tensor]
    color_quantiles: Tensor
    mask: Tensor | None  # (1, 1, H, W) at the content's size, or None (the whole image)


@dataclass
class Reference:
    """What images of one content and style(s) are judged against, computed once (`FeatureJudge.prepare`)."""

    size: tuple[int, int]
    content: Tensor
    content_features: dict[str, Tensor]
    styles: list[Style]
    scales: dict[str, float]  # the raw distance each relative one is divided by


class FeatureJudge(nn.Module):
    """Scores images on content kept and style taken, on a fixed feature network (see the module docstring).

    `network` makes the feature network for a list of layer names (a `_partial_` VGGFeatures node);
    `projections` random unit directions per layer (and for colour), drawn once from `seed`; `quantiles`
    levels at which the projected distributions are compared; at most `samples` positions of a map (a fixed,
    seeded subset of a larger one), which bounds the cost of sorting at large sizes.
    """

    def __init__(self, network: Callable[..., nn.Module], content_layers: Sequence[str], style_layers: Sequence[str],
                 projections: int = 128, quantiles: int = 512, samples: int = 8192, seed: int = 0,
                 name: str = "judge"):
        super().__init__()
        if not content_layers or not style_layers:
            raise UserInputError("judge.content_layers and judge.style_layers must each name at least one layer")
        for key, value in (("projections", projections), ("quantiles", quantiles), ("samples", samples)):
            if not isinstance(value, int) or value < 1:
                raise UserInputError(f"judge.{key}={value} must be an integer >= 1")
        self.name, self.seed = name, seed
        self.content_layers, self.style_layers = list(content_layers), list(style_layers)
        self.projection_count, self.quantile_count, self.sample_count = projections, quantiles, samples
        self.network = network(layers=list(dict.fromkeys([*self.content_layers, *self.style_layers])))
        self.network_settings = {key: value for key, value in getattr(network, "keywords", {}).items()
                                 if isinstance(value, str | int | float | bool)}
        generator = torch.Generator().manual_seed(seed)
        channels = {layer: f.shape[1] for layer, f in self.network(torch.zeros(1, 3, 32, 32)).items()}
        for layer in self.style_layers:
            self.register_buffer(f"directions_{layer}", unit_directions(channels[layer], projections, generator),
                                 persistent=False)
        self.register_buffer("color_directions", unit_directions(3, projections, generator), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def settings(self) -> dict[str, Any]:
        """What the judge measures with, for results.json: its name and every setting of its node."""
        return {"name": self.name, "network": self.network_settings, "content_layers": self.content_layers,
                "style_layers": self.style_layers, "projections": self.projection_count,
                "quantiles": self.quantile_count, "samples": self.sample_count, "seed": self.seed}

    def train(self, mode: bool = True) -> "FeatureJudge":
        """Always in eval mode: the judge is fixed."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return self.color_directions.device

    def fit(self, image: Tensor) -> Tensor:
        """`image` as the network takes it: float32 on the judge's device, enlarged if smaller than the
        deepest layer needs (any size is judged)."""
        image = image.detach().to(self.device, torch.float32)
        short = min(image.shape[-2:])
        if short < self.network.min_size:
            scale = self.network.min_size / short
            size = [max(self.network.min_size, round(side * scale)) for side in image.shape[-2:]]
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        return image

    def quantiles(self, samples: Tensor, directions: Tensor, weights: Tensor | None = None) -> Tensor:
        """Quantiles of `samples` (N, C) along each direction; of a fixed subset of them where N > `samples`,
        the same subset for every map of N positions."""
        if len(samples) > self.sample_count:
            generator = torch.Generator().manual_seed(self.seed + len(samples))
            subset = torch.randperm(len(samples), generator=generator)[:self.sample_count].to(samples.device)
            samples = samples[subset]
            weights = None if weights is None else weights[subset]
        return projected_quantiles(samples, directions, quantile_levels(self.quantile_count, samples.device)
                                   .to(samples.dtype), weights)

    def features(self, image: Tensor) -> dict[str, Tensor]:
        return self.network(image)

    @torch.no_grad()
    def prepare(self, content: Tensor, styles: Sequence[Tensor], blend: Sequence[float] | None = None,
                masks: Sequence[Tensor] | None = None) -> Reference:
        """The reference for images of `content`'s size: content features, each style's quantiles (the style
        resized so its long side is the content's, whatever style scale a run used) and the scales of the
        relative distances. `blend` weights the styles (equal by default); `masks` give each its region."""
        with torch.autocast(self.device.type, enabled=False):
            content = self.fit(content)
            size = tuple(content.shape[-2:])
            if masks is not None and len(masks) != len(styles):
                raise UserInputError(f"{len(masks)} mask(s) for {len(styles)} style image(s); give one per style")
            weights = self.style_weights(len(styles), blend, masks)
            references, resized = [], []
            for i, style in enumerate(styles):
                style = self.fit(style)
                long = max(size)
                style = F.interpolate(style, scale_factor=long / max(style.shape[-2:]), mode="bicubic",
                                      antialias=True, align_corners=False, recompute_scale_factor=True).clamp(0, 1)
                features = self.features(style)
                mask = None if masks is None else F.interpolate(masks[i].to(self.device, torch.float32), size=size,
                                                                mode="bilinear", align_corners=False)
                references.append(Style(weights[i], {layer: self.quantiles(positions(features[layer]),
                                                                             getattr(self, f"directions_{layer}"))
                                                     for layer in self.style_layers},
                                        self.quantiles(positions(style), self.color_directions), mask))
                resized.append(F.interpolate(style, size=size, mode="bicubic", antialias=True,
                                             align_corners=False).clamp(0, 1))
            content_features = self.features(content)
            reference = Reference(size, content, {layer: content_features[layer] for layer in self.content_layers},
                                  references, scales={})
            unstylised = self.raw(content, reference, content_features)
            from_styles = [self.raw(image, reference) for image in resized]
            reference.scales = {"content": sum(s.weight * r["content_raw"] for s, r in zip(references, from_styles)),
                                "style": unstylised["style_raw"], "color": unstylised["color_raw"]}
        return reference

    @staticmethod
    def style_weights(count: int, blend: Sequence[float] | None, masks: Sequence[Tensor] | None) -> list[float]:
        """Each style's share: its blend weight, or its region's share of the area the masks cover."""
        if masks is not None:
            areas = [float(mask.float().mean()) for mask in masks]
        else:
            areas = list(blend) if blend is not None else [1.0] * count
        if len(areas) != count or sum(areas) <= 0 or min(areas) < 0:
            raise UserInputError(f"style weights {areas} for {count} style image(s): give one weight >= 0 per style, "
                                 "not all 0")
        return [a / sum(areas) for a in areas]

    def distribution_distance(self, samples: Tensor, size: tuple[int, int], directions: Tensor,
                              targets: Sequence[tuple[Tensor, Tensor | None]], weights: Sequence[float]) -> float:
        """sum_i w_i SW(samples in region i, target i) for samples of one map of `size` (H, W); a region
        covering none of the map's positions is left out and the weights of the others renormalised."""
        total, weight_sum = 0.0, 0.0
        for w, (target, mask) in zip(weights, targets):
            position_weights = None
            if mask is not None:
                position_weights = F.interpolate(mask, size=size, mode="area").flatten()
                if float(position_weights.sum()) <= 1e-6:
                    continue
            total += w * float(sliced_wasserstein(self.quantiles(samples, directions, position_weights), target))
            weight_sum += w
        return total / weight_sum if weight_sum > 0 else float("nan")

    def raw(self, image: Tensor, reference: Reference, features: dict[str, Tensor] | None = None) -> dict[str, float]:
        """The raw distances of `image` (at the reference's size) from the reference's content and styles."""
        features = self.features(image) if features is None else features
        weights = [s.weight for s in reference.styles]
        content = sum(float(relative_feature_error(features[layer], reference.content_features[layer]))
                      for layer in self.content_layers) / len(self.content_layers)
        style = sum(self.distribution_distance(positions(features[layer]), tuple(features[layer].shape[-2:]),
                                               getattr(self, f"directions_{layer}"),
                                               [(s.quantiles[layer], s.mask) for s in reference.styles], weights)
                    for layer in self.style_layers) / len(self.style_layers)
        color = self.distribution_distance(positions(image), tuple(image.shape[-2:]), self.color_directions,
                                           [(s.color_quantiles, s.mask) for s in reference.styles], weights)
        return {"content_raw": content, "style_raw": style, "color_raw": color}

    @torch.no_grad()
    def score(self, image: Tensor, reference: Reference) -> dict[str, float]:
        """Every number of one image (1, 3, H, W) in [0, 1], as a PNG keeps it (`as_saved`): `content`, `style`
        and `color` relative to their references, `score` the distance from the ideal corner (hypot(content,
        style), lower is better: 1 is the content or the style image unchanged, and only an image that keeps
        content and takes style in balance scores below both), the raw distances, and `content_ssim` (1 = the
        content's structure)."""
        with torch.autocast(self.device.type, enabled=False):
            image = self.fit(as_saved(image))
            if tuple(image.shape[-2:]) != reference.size:
                image = F.interpolate(image, size=reference.size, mode="bicubic", antialias=True,
                                      align_corners=False).clamp(0, 1)
            raw = self.raw(image, reference)
            luma = torch.tensor(LUMA, device=self.device).view(1, 3, 1, 1)
            ssim = structural_similarity_index_measure((image * luma).sum(1, keepdim=True),
                                                       (reference.content * luma).sum(1, keepdim=True),
                                                       data_range=1.0)
        relative = {key: raw[f"{key}_raw"] / scale if scale > 1e-12 else float("nan")
                    for key, scale in reference.scales.items()}
        return {"content": relative["content"], "style": relative["style"],
                "score": math.hypot(relative["content"], relative["style"]), "color": relative["color"],
                "content_ssim": float(ssim), **raw}

    def forward(self, image: Tensor, content: Tensor, styles: Sequence[Tensor], blend: Sequence[float] | None = None,
                masks: Sequence[Tensor] | None = None) -> dict[str, float]:
        """`score` of one image against a content (resized to the image's size if it differs) and style(s)."""
        if content.shape[-2:] != image.shape[-2:]:
            content = F.interpolate(content, size=image.shape[-2:], mode="bicubic", antialias=True,
                                    align_corners=False).clamp(0, 1)
        return self.score(image, self.prepare(content, styles, blend, masks))


def as_saved(image: Tensor) -> Tensor:
    """The image as its PNG holds it: 8 bits a channel, made as `save_image` makes them (torchvision's
    `to_pil_image`), so a run's numbers and those of its saved result.png agree."""
    return (image.detach().clamp(0, 1) * 255).to(torch.uint8).to(image.dtype) / 255


def unit_directions(channels: int, count: int, generator: torch.Generator) -> Tensor:
    """(channels, count) random directions, each of unit length, drawn from `generator`."""
    directions = torch.randn(channels, count, generator=generator)
    return directions / directions.norm(dim=0, keepdim=True)
