"""GAN losses against values computed by hand, the gradient penalty against autograd, and the losses
as config nodes: `gan.loss=<name>` builds the node of that name, including one from outside the package."""

import math
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from nst_research.errors import UserInputError
from nst_research.gan.losses import HingeLoss, LeastSquaresLoss, NonSaturatingLoss, WassersteinLoss, gradient_penalty
from nst_research.gan.task import make_loss

LOSS_DIR = Path(__file__).resolve().parents[1] / "conf" / "gan" / "loss"
CLASSES = {"bce": NonSaturatingLoss, "lsgan": LeastSquaresLoss, "wgan_gp": WassersteinLoss, "hinge": HingeLoss}

REAL = torch.tensor([0.0, 2.0])  # discriminator outputs (logits / scores) on real images
FAKE = torch.tensor([-1.0, 3.0])  # ... and on generated ones


def minus_log_sigmoid(x: float) -> float:
    return -math.log(1 / (1 + math.exp(-x)))


def test_bce_is_the_non_saturating_cross_entropy():
    bce = NonSaturatingLoss()
    minus_log_d_x = (minus_log_sigmoid(0) + minus_log_sigmoid(2)) / 2
    minus_log_1_minus_d_g_z = (-math.log(1 - 1 / (1 + math.exp(1))) - math.log(1 - 1 / (1 + math.exp(-3)))) / 2
    d_expected = minus_log_d_x + minus_log_1_minus_d_g_z
    assert bce.discriminator(REAL, FAKE).item() == pytest.approx(d_expected, rel=1e-6)
    assert bce.generator(FAKE).item() == pytest.approx((minus_log_sigmoid(-1) + minus_log_sigmoid(3)) / 2, rel=1e-6)
    assert bce.score(torch.tensor([0.0])).item() == 0.5  # logged as a probability
    assert bce.gradient_penalty_weight == 0


def test_bce_is_stable_for_large_logits():
    assert torch.isfinite(NonSaturatingLoss().discriminator(torch.tensor([-200.0]), torch.tensor([200.0])))


def test_least_squares():
    lsgan = LeastSquaresLoss()
    # 1/2 mean((D(x) - 1)^2) = 1/2 (1 + 1)/2; 1/2 mean(D(G(z))^2) = 1/2 (1 + 9)/2
    assert lsgan.discriminator(REAL, FAKE).item() == pytest.approx(0.5 + 2.5)
    assert lsgan.generator(FAKE).item() == pytest.approx(0.5 * (4 + 4) / 2)  # 1/2 mean((D(G(z)) - 1)^2)


def test_wasserstein():
    wgan = WassersteinLoss()
    assert wgan.discriminator(REAL, FAKE).item() == pytest.approx(1.0 - 1.0)  # mean fake - mean real
    assert wgan.discriminator(REAL, -FAKE).item() == pytest.approx(-1.0 - 1.0)
    assert wgan.generator(FAKE).item() == pytest.approx(-1.0)
    assert torch.equal(wgan.score(FAKE), FAKE)  # logged as the raw score


def test_hinge():
    hinge = HingeLoss()
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


@pytest.mark.parametrize("name", CLASSES)
def test_each_loss_name_builds_its_node(compose_cfg, name):
    loss = make_loss(compose_cfg(["task=gan", f"gan.loss={name}"]).gan)
    assert type(loss) is CLASSES[name]
    assert loss.gradient_penalty_weight == (10 if name == "wgan_gp" else 0)  # WGAN-GP: Gulrajani et al.'s weight


def test_every_loss_file_is_a_choice(compose_cfg):
    """A YAML in conf/gan/loss/ is a gan.loss choice only once conf/gan/_common.yaml lists it."""
    assert list(compose_cfg(["task=gan"]).gan.losses) == ["bce", "lsgan", "wgan_gp", "hinge"]
    assert {path.stem for path in LOSS_DIR.glob("*.yaml")} == set(CLASSES)


def test_node_settings_reach_the_loss(compose_cfg):
    loss = make_loss(compose_cfg(["task=gan", "gan.loss=wgan_gp", "gan.losses.wgan_gp.gradient_penalty_weight=5"]).gan)
    assert loss.gradient_penalty_weight == 5


def test_a_loss_from_outside_the_package_is_a_node_alone(compose_cfg, tmp_path, monkeypatch):
    """A new loss: one class in the user's own module and one node naming it, nothing in the package."""
    (tmp_path / "outside_gan_loss.py").write_text(textwrap.dedent('''
        from nst_research.gan.losses import GANLoss

        class ScaledHinge(GANLoss):
            def __init__(self, margin, **kwargs):
                super().__init__(**kwargs)
                self.margin = margin

            def discriminator(self, real, fake):
                return (self.margin - real).relu().mean() + (self.margin + fake).relu().mean()

            def generator(self, fake):
                return -fake.mean()
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose_cfg(["task=gan", "+gan.losses.mine._target_=outside_gan_loss.ScaledHinge",
                       "+gan.losses.mine.margin=2", "gan.loss=mine"])
    loss = make_loss(cfg.gan)
    assert type(loss).__name__ == "ScaledHinge" and loss.margin == 2 and loss.gradient_penalty_weight == 0
    # mean(max(0, 2 - [0, 2])) = 1; mean(max(0, 2 + [-1, 3])) = 3
    assert loss.discriminator(REAL, FAKE).item() == pytest.approx(4.0)


def test_unknown_loss_names_the_choices(compose_cfg):
    choices = "bce, lsgan, wgan_gp, hinge"
    with pytest.raises(UserInputError, match=f"^gan.loss=wgan is not a GAN loss; choose one of: {choices}$"):
        make_loss(compose_cfg(["task=gan", "gan.loss=wgan"]).gan)
