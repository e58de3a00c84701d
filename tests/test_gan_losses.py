"""GAN losses against values computed by hand, and the gradient penalty against autograd."""

import math

import pytest
import torch
from torch import nn

from nst_research.errors import UserInputError
from nst_research.gan.losses import LOSSES, get_loss, gradient_penalty

REAL = torch.tensor([0.0, 2.0])  # discriminator outputs (logits / scores) on real images
FAKE = torch.tensor([-1.0, 3.0])  # ... and on generated ones


def minus_log_sigmoid(x: float) -> float:
    return -math.log(1 / (1 + math.exp(-x)))


def test_bce_is_the_non_saturating_cross_entropy():
    bce = LOSSES["bce"]
    d_expected = ((minus_log_sigmoid(0) + minus_log_sigmoid(2)) / 2             # -log D(x)
                  + (-math.log(1 - 1 / (1 + math.exp(1))) - math.log(1 - 1 / (1 + math.exp(-3)))) / 2)  # -log(1 - D(G(z)))
    assert bce.discriminator(REAL, FAKE).item() == pytest.approx(d_expected, rel=1e-6)
    assert bce.generator(FAKE).item() == pytest.approx((minus_log_sigmoid(-1) + minus_log_sigmoid(3)) / 2, rel=1e-6)
    assert bce.score(torch.tensor([0.0])).item() == 0.5  # logged as a probability
    assert bce.gradient_penalty_weight == 0


def test_bce_is_stable_for_large_logits():
    assert torch.isfinite(LOSSES["bce"].discriminator(torch.tensor([-200.0]), torch.tensor([200.0])))


def test_least_squares():
    lsgan = LOSSES["lsgan"]
    # 1/2 mean((D(x) - 1)^2) = 1/2 (1 + 1)/2; 1/2 mean(D(G(z))^2) = 1/2 (1 + 9)/2
    assert lsgan.discriminator(REAL, FAKE).item() == pytest.approx(0.5 + 2.5)
    assert lsgan.generator(FAKE).item() == pytest.approx(0.5 * (4 + 4) / 2)  # 1/2 mean((D(G(z)) - 1)^2)


def test_wasserstein_with_gradient_penalty_weight_10():
    wgan = LOSSES["wgan_gp"]
    assert wgan.discriminator(REAL, FAKE).item() == pytest.approx(1.0 - 1.0)  # mean fake - mean real
    assert wgan.discriminator(REAL, -FAKE).item() == pytest.approx(-1.0 - 1.0)
    assert wgan.generator(FAKE).item() == pytest.approx(-1.0)
    assert wgan.gradient_penalty_weight == 10


def test_hinge():
    hinge = LOSSES["hinge"]
    # mean(max(0, 1 - [0, 2])) = 0.5; mean(max(0, 1 + [-1, 3])) = 2
    assert hinge.discriminator(REAL, FAKE).item() == pytest.approx(2.5)
    assert hinge.generator(FAKE).item() == pytest.approx(-1.0)


def test_gradient_penalty_of_a_linear_critic_is_its_weight_norm_minus_one_squared():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        critic[1].weight.copy_(torch.tensor([[3.0, 4.0]]))  # gradient norm 5 everywhere
    real, fake = torch.randn(5, 1, 1, 2), torch.randn(5, 1, 1, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx((5 - 1) ** 2)


def test_gradient_penalty_matches_autograd_on_a_tiny_case():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))
    real, fake = torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2)
    torch.manual_seed(1)
    penalty = gradient_penalty(critic, real, fake)
    torch.manual_seed(1)
    alpha = torch.rand(2, 1, 1, 1)  # the same interpolation weights, drawn the same way
    expected = 0.0
    for i in range(2):  # one image at a time, by autograd.functional
        point = alpha[i] * real[i] + (1 - alpha[i]) * fake[i]
        grad = torch.autograd.functional.jacobian(lambda x: critic(x.unsqueeze(0)).squeeze(), point)
        expected += (grad.norm() - 1).item() ** 2 / 2
    assert penalty.item() == pytest.approx(expected, rel=1e-5)
    penalty.backward()  # the penalty trains the critic: its gradient reaches the weights
    assert critic[1].weight.grad is not None and critic[1].weight.grad.abs().sum() > 0


def test_unknown_loss_names_the_choices():
    with pytest.raises(UserInputError, match="bce, lsgan, wgan_gp, hinge"):
        get_loss("wgan")
