"""VGG layer names the paper's way (conv1_1 ... conv5_4, relu1_1 ..., pool1 ...).

The PyTorch tutorial's "conv_4" counts convolutions globally (it is conv2_2); here every
name says its block and its place in the block, as in Gatys et al. (2016) and Caffe.
"""

from typing import TYPE_CHECKING

from nst_research.errors import UserInputError

if TYPE_CHECKING:  # torch loads with the network, not with the layer names
    from torch import nn

# Convolutions per block; pooling closes each block.
BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
# torchvision's names for the same topologies.
TORCHVISION_CFGS = {"vgg16": "D", "vgg19": "E"}


def layer_names(arch: str) -> list[str]:
    """All layer names of `arch`, in the order of torchvision's `features` Sequential."""
    if arch not in BLOCKS:
        raise UserInputError(f"unknown architecture {arch!r}; choose one of {sorted(BLOCKS)}")
    names = []
    for block, convs in enumerate(BLOCKS[arch], start=1):
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


def conv_names(arch: str) -> list[str]:
    """The convolution layer names of `arch`, in order."""
    return [name for name in layer_names(arch) if name.startswith("conv")]


def check_layers(arch: str, layers: list[str]) -> None:
    """Fail with the list of valid names when any of `layers` is not a layer of `arch`."""
    valid = layer_names(arch)
    unknown = [name for name in layers if name not in valid]
    if unknown:
        raise UserInputError(
            f"unknown {arch} layer name(s) {unknown}; valid names are: {', '.join(valid)}"
        )


def name_modules(arch: str, features: "nn.Sequential") -> dict[str, "nn.Module"]:
    """Pair each module of a torchvision VGG `features` Sequential with its layer name."""
    names = layer_names(arch)
    if len(names) != len(features):
        raise ValueError(f"{arch} has {len(names)} layers, the network given has {len(features)}")
    return dict(zip(names, features))


def min_input_size(arch: str, deepest: str) -> int:
    """Smallest image side (px) whose feature map at `deepest` is at least 1 px: 2 ** pools up to it."""
    names = layer_names(arch)
    pools = sum(1 for name in names[: names.index(deepest) + 1] if name.startswith("pool"))
    return 2**pools


def vgg_features(arch: str) -> "nn.Sequential":
    """torchvision's VGG `features` Sequential alone (no 120M-parameter classifier), default init."""
    from torchvision.models import vgg

    layer_names(arch)  # validates arch
    return vgg.make_layers(vgg.cfgs[TORCHVISION_CFGS[arch]])
