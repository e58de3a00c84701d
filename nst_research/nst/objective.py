"""`StyleTransferObjective`: the weighted sum of loss terms over one pass of the feature network.

    total = sum_t weight_t * term_t(image)        (Gatys et al.: alpha * content + beta * style [+ gamma * TV])

The terms (`nst_research.nst.terms`) come from config as `_target_` nodes, keyed by the name each is
logged under (`content`, `style`, `tv`, or a user's own). The feature network runs once per
evaluation and serves every term, in the objective's `Precision` (fp32, or bf16 autocast).
"""

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn

from nst_research.features import VGGFeatures
from nst_research.nst.terms import LossTerm
from nst_research.precision import Precision


class StyleTransferObjective(nn.Module):
    """Every term of an image, weighted and summed, from one pass of `features`.

    `set_content` and `set_styles` compute the targets once, without gradients (a feed-forward
    network's training calls `set_content` with each batch). `forward` returns the total, each term
    by name and each term's parts (`style/relu1_1`, ...), so that each can be logged. A term's weight
    may be a list, one value per image of a batch: `element_losses` then gives each image's terms with
    its own weights (a batched sweep).

    `compute_in(precision)` sets how evaluations compute: with bf16 the network and the terms run under
    autocast, and the features leave the network as fp32, so the terms' matrix products (Gram matrices,
    patch scores) run in bf16 while their sums and differences, and so the losses, stay fp32. Targets are
    computed in fp32 and channels_last applies to the network. `exact=True` evaluates in fp32 whatever the
    precision: how results are measured.
    """

    def __init__(self, features: VGGFeatures, terms: Mapping[str, LossTerm]):
        super().__init__()
        if "total" in terms:
            raise ValueError("a loss term may not be named 'total'")
        self.features = features
        self.terms = nn.ModuleDict(dict(terms))
        sizes = {len(term.weights) for term in self.terms.values()} - {1}
        if len(sizes) > 1:
            raise ValueError(f"loss weights per image must have equal lengths, or one value: {sorted(sizes)}")
        self.batch_size = sizes.pop() if sizes else 1
        self.precision = Precision()

    def compute_in(self, precision: Precision) -> None:
        """Evaluate in `precision` (resolved for the device: fp32 or bf16) from now on."""
        self.precision = precision
        if precision.channels_last:
            self.features.to(memory_format=torch.channels_last)

    def feature_maps(self, images: Tensor) -> dict[str, Tensor]:
        """The network's features of `images` (in its memory layout), as fp32."""
        if self.precision.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return {layer: f.float() for layer, f in self.features(images).items()}

    def computing(self, images: Tensor, exact: bool) -> AbstractContextManager:
        """The context of an evaluation: the precision's autocast, or none at all with `exact`."""
        if exact:
            return torch.autocast(images.device.type, enabled=False)
        return self.precision.autocast(images.device.type)

    @staticmethod
    def layers(terms: Mapping[str, LossTerm]) -> list[str]:
        """The feature layers the terms read, each once, in order of appearance."""
        return list(dict.fromkeys(layer for term in terms.values() for layer in term.layers))

    @torch.no_grad()
    def set_content(self, content: Tensor) -> None:
        features = self.feature_maps(content)
        for term in self.terms.values():
            term.set_content(features)

    @torch.no_grad()
    def set_styles(self, styles: Sequence[Tensor], blend: Sequence[float],
                   masks: Sequence[Tensor] | None = None) -> None:
        features = [self.feature_maps(style) for style in styles]
        for term in self.terms.values():
            term.set_styles(features, list(blend), None if masks is None else list(masks))

    def set_targets(self, content: Tensor, styles: Sequence[Tensor], blend: Sequence[float],
                    masks: Sequence[Tensor] | None = None) -> None:
        """Content features and style targets, computed once (`set_content` and `set_styles`)."""
        self.set_content(content)
        self.set_styles(styles, blend, masks)

    def weighted(self, image: Tensor, features: dict[str, Tensor], element: int) -> dict[str, Tensor]:
        """Every term of `image` with the loss weights of batch element `element`."""
        losses, total = {}, image.new_zeros(())
        for name, term in self.terms.items():
            weight = term.weights[element if len(term.weights) > 1 else 0]
            value, parts = term(image, features, weight)
            total = total + weight * value
            losses[name] = value
            losses.update({f"{name}/{part}": v for part, v in parts.items()})
        return {"total": total, **losses}

    def forward(self, images: Tensor, exact: bool = False) -> dict[str, Tensor]:
        """Every term of an image, or of a batch with one set of loss weights (each term a mean over it);
        in fp32 with `exact`."""
        with self.computing(images, exact):
            return self.weighted(images, self.feature_maps(images), 0)

    def element_losses(self, images: Tensor, exact: bool = False) -> list[dict[str, Tensor]]:
        """Every term of each image of a batch, image b weighted by its own loss weights (a batched sweep).

        The feature network runs once over the batch; each image's terms are computed on its own slice
        of the features, so they depend on its pixels only, and the gradient of the sum of the totals is,
        image by image, the gradient of a separate run.
        """
        if len(images) != self.batch_size:
            raise ValueError(f"{len(images)} images for {self.batch_size} sets of loss weights")
        with self.computing(images, exact):
            features = self.feature_maps(images)
            return [self.weighted(images[b:b + 1], {layer: f[b:b + 1] for layer, f in features.items()}, b)
                    for b in range(len(images))]
