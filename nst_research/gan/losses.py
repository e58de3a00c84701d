"""GAN objectives on raw discriminator outputs (logits or critic scores), each a `_target_` node in
`conf/gan/loss/` that `gan.loss=<name>` picks.

A loss is a class with a discriminator loss of the real and fake outputs, a generator loss of the fake
outputs, and `score`, which maps outputs to the number logged as D(x) and D(G(z)). Any loss takes a
gradient penalty (`gradient_penalty_weight`, Gulrajani et al., 2017), which WGAN-GP sets to 10, and the
R1 penalty on real images (`r1_weight`, Mescheder et al., 2018).
"""

from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor


class GANLoss:
    """The interface `GANModule` uses; a new loss subclasses it and has a YAML in conf/gan/loss/."""

    def __init__(self, gradient_penalty_weight: float = 0.0, r1_weight: float = 0.0) -> None:
        for name, value in (("gradient_penalty_weight", gradient_penalty_weight), ("r1_weight", r1_weight)):
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name}={value} must be a number >= 0")
        self.gradient_penalty_weight, self.r1_weight = gradient_penalty_weight, r1_weight

    def discriminator(self, real: Tensor, fake: Tensor) -> Tensor:
        raise NotImplementedError

    def generator(self, fake: Tensor) -> Tensor:
        raise NotImplementedError

    def score(self, output: Tensor) -> Tensor:
        """What is logged as D(x) and D(G(z)): the raw output unless a loss reads it otherwise."""
        return output


class NonSaturatingLoss(GANLoss):
    """Goodfellow et al. (2014): D minimises -log D(x) - log(1 - D(G(z))), with D = sigmoid(logit); G the
    non-saturating -log D(G(z)). Logged as probabilities."""

    def discriminator(self, real: Tensor, fake: Tensor) -> Tensor:
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def generator(self, fake: Tensor) -> Tensor:
        return F.softplus(-fake).mean()

    def score(self, output: Tensor) -> Tensor:
        return torch.sigmoid(output)


class LeastSquaresLoss(GANLoss):
    """Mao et al. (2017), targets a=0 (fake), b=c=1 (real): D 1/2 (D(x) - 1)^2 + 1/2 D(G(z))^2;
    G 1/2 (D(G(z)) - 1)^2."""

    def discriminator(self, real: Tensor, fake: Tensor) -> Tensor:
        return 0.5 * (real - 1).square().mean() + 0.5 * fake.square().mean()

    def generator(self, fake: Tensor) -> Tensor:
        return 0.5 * (fake - 1).square().mean()


class WassersteinLoss(GANLoss):
    """Arjovsky et al. (2017): the critic minimises D(G(z)) - D(x), the generator -D(G(z))."""

    def discriminator(self, real: Tensor, fake: Tensor) -> Tensor:
        return fake.mean() - real.mean()

    def generator(self, fake: Tensor) -> Tensor:
        return -fake.mean()


class HingeLoss(GANLoss):
    """Lim & Ye (2017); Miyato et al. (2018): D max(0, 1 - D(x)) + max(0, 1 + D(G(z))); G -D(G(z))."""

    def discriminator(self, real: Tensor, fake: Tensor) -> Tensor:
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def generator(self, fake: Tensor) -> Tensor:
        return -fake.mean()


def input_gradient(discriminator: Callable[[Tensor], Tensor], images: Tensor) -> Tensor:
    """grad_x sum D(x) at `images`, with its graph kept so that a penalty on it trains D.

    Under bf16 autocast D runs in bf16 here too (bf16 has fp32's range, and the penalties come out within
    bf16's rounding of fp32's); under fp16 autocast D runs in fp32 instead, since this gradient is not scaled
    by the loss scaler and fp16 would flush its small values to zero. The gradient itself has the images' dtype.
    """
    device = images.device.type
    fp16 = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.float16
    with torch.autocast(device, enabled=False) if fp16 else nullcontext():
        (grad,) = torch.autograd.grad(discriminator(images).sum(), images, create_graph=True)
    return grad


def gradient_penalty(discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor) -> Tensor:
    """Gulrajani et al. (2017), eq. 3 without the weight: E[(||grad_x D(x_hat)||_2 - 1)^2], with x_hat a
    uniformly random point on the line between each real and fake image."""
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake.detach().to(real.dtype)).requires_grad_(True)
    return (input_gradient(discriminator, mixed).flatten(1).norm(2, dim=1) - 1).square().mean()


def r1_penalty(discriminator: Callable[[Tensor], Tensor], real: Tensor) -> Tensor:
    """Mescheder et al. (2018), eq. 9 without gamma / 2: E[||grad_x D(x)||^2] on real images, which keeps D
    flat on the data so that training converges locally."""
    real = real.detach().requires_grad_(True)
    return input_gradient(discriminator, real).flatten(1).square().sum(1).mean()
