"""Generators and discriminators. Each `conf/gan/*.yaml` names one pair by `_target_`.

Every generator maps noise (batch, noise_dim) to images (batch, channels, size, size) in [-1, 1]
and exposes `noise_dim`, `channels`, `image_size` and `num_classes`; every discriminator maps such
images to one logit (or critic score) per image, shape (batch,).

Conditional generation (`gan.conditional=true`, the task passes the data's `num_classes`): generators
take the class too (`forward(z, y)`): the fully connected ones an embedding concatenated to the noise
(Mirza and Osindero, 2014), the convolutional ones conditional batch norm (a scale and shift per class,
de Vries et al., 2017, as in Miyato and Koyama's generator). Discriminators get a head for the class
(`conditional_head`): `projection` adds <embed(y), phi(x)> to the score (Miyato and Koyama, 2018), `acgan`
returns class logits beside the score (Odena et al., 2017). Every discriminator takes `spectral_norm`
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


class ConditionalBatchNorm(nn.Module):
    """Batch norm without its own affine, then a scale (initially 1) and shift (0) looked up per class."""

    def __init__(self, features: int, num_classes: int, dims: int) -> None:
        super().__init__()
        self.norm = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(features, affine=False)
        self.scale, self.shift = nn.Embedding(num_classes, features), nn.Embedding(num_classes, features)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], x.shape[1]) + (1,) * (x.dim() - 2)
        return self.norm(x) * self.scale(y).view(shape) + self.shift(y).view(shape)


def batch_norm(features: int, dims: int, num_classes: int | None) -> nn.Module:
    """Plain batch norm, or conditional batch norm when the generator is conditional."""
    if num_classes is None:
        return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(features)
    return ConditionalBatchNorm(features, num_classes, dims)


class Conditioned(nn.Sequential):
    """A Sequential that hands the class labels to its conditional batch norms."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self:
            x = layer(x, y) if isinstance(layer, ConditionalBatchNorm) else layer(x)
        return x


class MLPGenerator(nn.Module):
    """Fully connected generator: Linear-ReLU blocks through `hidden`, then Linear-Tanh to the image;
    conditional: an embedding of the class (num_classes wide) concatenated to the noise."""

    def __init__(self, noise_dim: int, hidden: list[int], image_size: int = 28, channels: int = 1,
                 num_classes: int | None = None) -> None:
        super().__init__()
        self.noise_dim, self.channels, self.image_size = noise_dim, channels, image_size
        self.num_classes = num_classes
        self.embed = None if num_classes is None else nn.Embedding(num_classes, num_classes)
        widths = [noise_dim + (num_classes or 0), *hidden]
        layers: list[nn.Module] = []
        for n_in, n_out in pairwise(widths):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        layers += [nn.Linear(widths[-1], channels * image_size * image_size), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], dim=1)
        return self.net(z).view(-1, self.channels, self.image_size, self.image_size)


class Discriminator(nn.Module):
    """What every discriminator shares: its `net` ends in `head_layers` layers from the features phi(x) to
    one score, and a conditional one adds a class head on phi(x) (summed over positions when spatial)."""

    head_layers = 1

    def condition(self, num_classes: int | None, head: str, features: int) -> None:
        """Add the class head: `projection` (an embedding of the class) or `acgan` (a linear classifier)."""
        self.num_classes, self.conditioning = num_classes, None if num_classes is None else head
        if num_classes is None:
            return
        if head == "projection":
            self.embed = nn.Embedding(num_classes, features)
            nn.init.xavier_uniform_(self.embed.weight)
        elif head == "acgan":
            self.classifier = nn.Linear(features, num_classes)
        else:
            raise ValueError(f"gan.conditional_head={head}: choose projection or acgan")

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The score (batch,); with `acgan`, (score, class logits (batch, num_classes))."""
        layers = list(self.net)  # not self.net[:-k]: slicing builds a new Sequential at every call
        features = x
        for layer in layers[:-self.head_layers]:
            features = layer(features)
        score = features
        for layer in layers[-self.head_layers:]:
            score = layer(score)
        score = score.flatten(1).squeeze(1)
        if self.conditioning is None:
            return score
        pooled = features.flatten(2).sum(2) if features.dim() > 2 else features
        if self.conditioning == "projection":
            return score + (self.embed(y) * pooled).sum(1)
        return score, self.classifier(pooled)


class MLPDiscriminator(Discriminator):
    """Fully connected discriminator: Linear-LeakyReLU blocks through `hidden`, then Linear to one logit."""

    def __init__(self, hidden: list[int], negative_slope: float, image_size: int = 28, channels: int = 1,
                 spectral_norm: bool = False, num_classes: int | None = None,
                 conditional_head: str = "projection") -> None:
        super().__init__()
        widths = [channels * image_size * image_size, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for n_in, n_out in pairwise(widths):
            layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(negative_slope)]
        layers.append(nn.Linear(widths[-1], 1))
        self.net = nn.Sequential(*layers)
        self.condition(num_classes, conditional_head, widths[-1])
        with_spectral_norm(self, spectral_norm)


class DCGAN28Generator(nn.Module):
    """28x28 DCGAN generator: FC 1024 - ReLU - BN - FC 7*7*128 - ReLU - BN -
    ConvT 64 (4x4, stride 2) - ReLU - BN - ConvT channels (4x4, stride 2) - Tanh; conditional batch norm
    when conditional."""

    image_size = 28

    def __init__(self, noise_dim: int, channels: int = 1, num_classes: int | None = None) -> None:
        super().__init__()
        self.noise_dim, self.channels, self.num_classes = noise_dim, channels, num_classes
        self.net = Conditioned(
            nn.Linear(noise_dim, 1024), nn.ReLU(), batch_norm(1024, 1, num_classes),
            nn.Linear(1024, 7 * 7 * 128), nn.ReLU(), batch_norm(7 * 7 * 128, 1, num_classes),
            nn.Unflatten(1, (128, 7, 7)),
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1), nn.ReLU(), batch_norm(64, 2, num_classes),
            nn.ConvTranspose2d(64, channels, 4, stride=2, padding=1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z, y)


class DCGAN28Discriminator(Discriminator):
    """28x28 DCGAN discriminator: conv 32 (5x5) - LeakyReLU - max-pool - conv 64 (5x5) - LeakyReLU -
    max-pool - FC 1024 - LeakyReLU - FC 1."""

    def __init__(self, negative_slope: float = 0.01, channels: int = 1, spectral_norm: bool = False,
                 num_classes: int | None = None, conditional_head: str = "projection") -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 5), nn.LeakyReLU(negative_slope), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5), nn.LeakyReLU(negative_slope), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 4 * 4, 1024), nn.LeakyReLU(negative_slope), nn.Linear(1024, 1),
        )
        self.condition(num_classes, conditional_head, 1024)
        with_spectral_norm(self, spectral_norm)


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. (2016): conv weights ~ N(0, 0.02); batch-norm scales ~ N(1, 0.02), shifts 0 (per class
    for conditional batch norm)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, ConditionalBatchNorm):  # the same, per class
            nn.init.normal_(m.scale.weight, 1.0, 0.02)
            nn.init.zeros_(m.shift.weight)


def doublings(image_size: int) -> int:
    """Number of stride-2 stages between 4x4 and `image_size` (32 -> 3, 64 -> 4)."""
    if image_size not in (32, 64):
        raise ValueError(f"image_size={image_size}: DCGAN64 makes 32x32 or 64x64 images")
    return int(math.log2(image_size // 4))


class DCGAN64Generator(nn.Module):
    """Radford et al. (2016) generator: ConvT 4x4 from 1x1 to 4x4, then stride-2 ConvT-BN-ReLU stages
    halving the width up to `image_size` (64 or 32), Tanh output; N(0, 0.02) init; conditional batch norm
    when conditional."""

    def __init__(self, noise_dim: int = 100, width: int = 64, image_size: int = 64, channels: int = 3,
                 num_classes: int | None = None) -> None:
        super().__init__()
        self.noise_dim, self.channels, self.image_size = noise_dim, channels, image_size
        self.num_classes = num_classes
        n = doublings(image_size)
        widths = [width * 2 ** (n - 1 - i) for i in range(n)]  # 64 px: 512, 256, 128, 64
        layers: list[nn.Module] = [nn.Unflatten(1, (noise_dim, 1, 1)),
                                   nn.ConvTranspose2d(noise_dim, widths[0], 4, 1, 0, bias=False),
                                   batch_norm(widths[0], 2, num_classes), nn.ReLU(True)]
        for n_in, n_out in pairwise(widths):
            layers += [nn.ConvTranspose2d(n_in, n_out, 4, 2, 1, bias=False), batch_norm(n_out, 2, num_classes),
                       nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = Conditioned(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z, y)


class DCGAN64Discriminator(Discriminator):
    """Radford et al. (2016) discriminator: stride-2 Conv-(BN)-LeakyReLU(0.2) stages doubling the width
    down to 4x4, then a 4x4 conv to one logit. `norm="none"` drops batch norm (for WGAN-GP, whose
    per-sample gradient penalty batch norm would couple)."""

    head_layers = 2  # the 4x4 conv to one score and its flattening

    def __init__(self, width: int = 64, image_size: int = 64, channels: int = 3, norm: str = "batch",
                 spectral_norm: bool = False, num_classes: int | None = None,
                 conditional_head: str = "projection") -> None:
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
        self.condition(num_classes, conditional_head, widths[-1])
        dcgan_init(self)
        with_spectral_norm(self, spectral_norm)
