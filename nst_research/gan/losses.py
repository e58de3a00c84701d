"""GAN objectives on raw discriminator outputs (logits or critic scores), as pure tensor functions.

Each loss is a pair (discriminator loss of real and fake outputs, generator loss of fake outputs);
`GANLoss.score` maps outputs to the number logged as D(x) and D(G(z)).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nst_research.errors import UserInputError


def bce_discriminator(real: Tensor, fake: Tensor) -> Tensor:
    """Goodfellow et al. (2014): -log D(x) - log(1 - D(G(z))), with D = sigmoid(logit)."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def bce_generator(fake: Tensor) -> Tensor:
    """The non-saturating generator loss: -log D(G(z))."""
    return F.softplus(-fake).mean()


def lsgan_discriminator(real: Tensor, fake: Tensor) -> Tensor:
    """Mao et al. (2017), targets a=0 (fake), b=1 (real): 1/2 (D(x) - 1)^2 + 1/2 D(G(z))^2."""
    return 0.5 * (real - 1).square().mean() + 0.5 * fake.square().mean()


def lsgan_generator(fake: Tensor) -> Tensor:
    """Mao et al. (2017), target c=1: 1/2 (D(G(z)) - 1)^2."""
    return 0.5 * (fake - 1).square().mean()


def wasserstein_discriminator(real: Tensor, fake: Tensor) -> Tensor:
    """Arjovsky et al. (2017) critic loss: D(G(z)) - D(x) (the gradient penalty is added separately)."""
    return fake.mean() - real.mean()


def hinge_discriminator(real: Tensor, fake: Tensor) -> Tensor:
    """Lim & Ye (2017); Miyato et al. (2018): max(0, 1 - D(x)) + max(0, 1 + D(G(z)))."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def negated_score(fake: Tensor) -> Tensor:
    """The generator loss of WGAN and hinge GANs: -D(G(z))."""
    return -fake.mean()


def gradient_penalty(discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """Gulrajani et al. (2017), eq. 3 without the weight: E[(||grad_x D(x_hat)||_2 - 1)^2], with x_hat a
    uniformly random point on the line between each real and fake image."""
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).square().mean()


@dataclass(frozen=True)
class GANLoss:
    discriminator: Callable[[Tensor, Tensor], Tensor]
    generator: Callable[[Tensor], Tensor]
    gradient_penalty_weight: float = 0.0
    score: Callable[[Tensor], Tensor] = torch.Tensor.detach  # bce: the probability sigmoid(logit)


LOSSES = {
    "bce": GANLoss(bce_discriminator, bce_generator, score=torch.sigmoid),
    "lsgan": GANLoss(lsgan_discriminator, lsgan_generator),
    "wgan_gp": GANLoss(wasserstein_discriminator, negated_score, gradient_penalty_weight=10.0),
    "hinge": GANLoss(hinge_discriminator, negated_score),
}


def get_loss(name: str) -> GANLoss:
    if name not in LOSSES:
        raise UserInputError(f"gan.loss={name} is not a GAN loss; choose one of: {', '.join(LOSSES)}")
    return LOSSES[name]
