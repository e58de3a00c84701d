"""Generators and discriminators. Each `conf/gan/*.yaml` names one pair by `_target_`.

Every generator maps noise (batch, noise_dim) to images (batch, channels, size, size) in [-1, 1]
and exposes `noise_dim`, `channels` and `image_size`; every discriminator maps such images to one
logit (or critic score) per image, shape (batch,). Every discriminator takes `spectral_norm`
(`gan.discriminator.spectral_norm=true`): each of its weight layers divided by its largest singular value
(Miyato et al., 2018), which bounds D's Lipschitz constant.
"""

import math
from itertools import pairwise

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as normalise_spectrally


def with_spectral_norm(module: nn.Module, enabled: bool) -> None:
    """Miyato et al. (2018): reparametrise every conv and linear weight as W / sigma(W), sigma estimated by
    one power iteration per training forward pass (PyTorch's parametrization)."""
    if enabled:
        for layer in list(module.modules()):
            if isinstance(layer, nn.Conv2d | nn.Linear):
                normalise_spectrally(layer)


class MLPGenerator(nn.Module):
    """Fully connected generator: Linear-ReLU blocks through `hidden`, then Linear-Tanh to the image."""

    def __init__(self, noise_dim: int, hidden: list[int], image_size: int = 28, channels: int = 1) -> None:
        super().__init__()
        self.noise_dim, self.channels, self.image_size = noise_dim, channels, image_size
        widths = [noise_dim, *hidden]
        layers: list[nn.Module] = []
        for n_in, n_out in pairwise(widths):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        layers += [nn.Linear(widths[-1], channels * image_size * image_size), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, self.channels, self.image_size, self.image_size)


class MLPDiscriminator(nn.Module):
    """Fully connected discriminator: Linear-LeakyReLU blocks through `hidden`, then Linear to one logit."""

    def __init__(self, hidden: list[int], negative_slope: float, image_size: int = 28, channels: int = 1,
                 spectral_norm: bool = False) -> None:
        super().__init__()
        widths = [channels * image_size * image_size, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for n_in, n_out in pairwise(widths):
            layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(negative_slope)]
        layers.append(nn.Linear(widths[-1], 1))
        self.net = nn.Sequential(*layers)
        with_spectral_norm(self, spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class DCGAN28Generator(nn.Module):
    """28x28 DCGAN generator: FC 1024 - ReLU - BN - FC 7*7*128 - ReLU - BN -
    ConvT 64 (4x4, stride 2) - ReLU - BN - ConvT channels (4x4, stride 2) - Tanh."""

    image_size = 28

    def __init__(self, noise_dim: int, channels: int = 1) -> None:
        super().__init__()
        self.noise_dim, self.channels = noise_dim, channels
        self.net = nn.Sequential(
            nn.Linear(noise_dim, 1024), nn.ReLU(), nn.BatchNorm1d(1024),
            nn.Linear(1024, 7 * 7 * 128), nn.ReLU(), nn.BatchNorm1d(7 * 7 * 128),
            nn.Unflatten(1, (128, 7, 7)),
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1), nn.ReLU(), nn.BatchNorm2d(64),
            nn.ConvTranspose2d(64, channels, 4, stride=2, padding=1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class DCGAN28Discriminator(nn.Module):
    """28x28 DCGAN discriminator: conv 32 (5x5) - LeakyReLU - max-pool - conv 64 (5x5) - LeakyReLU -
    max-pool - FC 1024 - LeakyReLU - FC 1."""

    def __init__(self, negative_slope: float = 0.01, channels: int = 1, spectral_norm: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 5), nn.LeakyReLU(negative_slope), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5), nn.LeakyReLU(negative_slope), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 4 * 4, 1024), nn.LeakyReLU(negative_slope), nn.Linear(1024, 1),
        )
        with_spectral_norm(self, spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. (2016): conv weights ~ N(0, 0.02); batch-norm scales ~ N(1, 0.02), shifts 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def doublings(image_size: int) -> int:
    """Number of stride-2 stages between 4x4 and `image_size` (32 -> 3, 64 -> 4)."""
    if image_size not in (32, 64):
        raise ValueError(f"image_size={image_size}: DCGAN64 makes 32x32 or 64x64 images")
    return int(math.log2(image_size // 4))


class DCGAN64Generator(nn.Module):
    """Radford et al. (2016) generator: ConvT 4x4 from 1x1 to 4x4, then stride-2 ConvT-BN-ReLU stages
    halving the width up to `image_size` (64 or 32), Tanh output; N(0, 0.02) init."""

    def __init__(self, noise_dim: int = 100, width: int = 64, image_size: int = 64, channels: int = 3) -> None:
        super().__init__()
        self.noise_dim, self.channels, self.image_size = noise_dim, channels, image_size
        n = doublings(image_size)
        widths = [width * 2 ** (n - 1 - i) for i in range(n)]  # 64 px: 512, 256, 128, 64
        layers: list[nn.Module] = [nn.Unflatten(1, (noise_dim, 1, 1)),
                                   nn.ConvTranspose2d(noise_dim, widths[0], 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(True)]
        for n_in, n_out in pairwise(widths):
            layers += [nn.ConvTranspose2d(n_in, n_out, 4, 2, 1, bias=False), nn.BatchNorm2d(n_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class DCGAN64Discriminator(nn.Module):
    """Radford et al. (2016) discriminator: stride-2 Conv-(BN)-LeakyReLU(0.2) stages doubling the width
    down to 4x4, then a 4x4 conv to one logit. `norm="none"` drops batch norm (for WGAN-GP, whose
    per-sample gradient penalty batch norm would couple)."""

    def __init__(self, width: int = 64, image_size: int = 64, channels: int = 3, norm: str = "batch",
                 spectral_norm: bool = False) -> None:
        super().__init__()
        if norm not in ("batch", "none"):
            raise ValueError(f"norm={norm}: choose batch or none")
        n = doublings(image_size)
        widths = [width * 2**i for i in range(n)]  # 64 px: 64, 128, 256, 512
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for n_in, n_out in pairwise(widths):
            layers.append(nn.Conv2d(n_in, n_out, 4, 2, 1, bias=False))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(n_out))
            layers.append(nn.LeakyReLU(0.2, True))
        layers += [nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)
        with_spectral_norm(self, spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)
