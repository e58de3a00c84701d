"""Losses against values computed by hand on tiny tensors, and the objective that weights them."""

import math
from functools import partial

import pytest
import torch
from conftest import gatys_objective
from torch import nn

from nst_research.errors import UserInputError
from nst_research.nst.losses import (
    content_loss,
    gram_loss,
    gram_matrix,
    mean_covariance,
    mean_std,
    mean_std_loss,
    sqrtm_psd,
    style_loss,
    tv_loss,
    wasserstein2_loss,
)
from nst_research.nst.objective import StyleTransferObjective
from nst_research.nst.style_losses import GramStyleLoss, MeanStdStyleLoss, WassersteinStyleLoss


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# ---------------------------------------------------------------- content loss

def test_content_loss_mean_and_half_sum_by_hand():
    features = t([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = t([[[[1.0, 0.0], [0.0, 2.0]]]])
    # differences 0, 2, 3, 2 -> squares 0, 4, 9, 4: sum 17
    assert content_loss(features, target, "mean").item() == pytest.approx(17 / 4)
    assert content_loss(features, target, "half_sum").item() == pytest.approx(17 / 2)
    assert content_loss(features, target).item() == pytest.approx(17 / 4)  # default: mean


def test_content_loss_is_zero_at_the_target_and_has_a_gradient():
    target = torch.rand(1, 3, 4, 4)
    x = target.clone().requires_grad_(True)
    assert content_loss(x, target).item() == 0.0
    y = (target + 1.0).requires_grad_(True)
    content_loss(y, target, "half_sum").backward()
    # d/dy 1/2 sum (y - t)^2 = y - t = 1 everywhere
    torch.testing.assert_close(y.grad, torch.ones_like(y))


def test_content_loss_unknown_reduction_raises():
    with pytest.raises(ValueError, match="sum"):
        content_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), "sum")


# ---------------------------------------------------------------- Gram matrix

# One image, two channels, 2x2 positions:
#   channel 0 = [[1, 2], [3, 4]] -> flat (1, 2, 3, 4)
#   channel 1 = [[0, 1], [0, 1]] -> flat (0, 1, 0, 1)
# G00 = 1 + 4 + 9 + 16 = 30, G01 = G10 = 0 + 2 + 0 + 4 = 6, G11 = 0 + 1 + 0 + 1 = 2
TINY = t([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])  # 1 x 2 x 2 x 2


@pytest.mark.parametrize("normalization, expected", [
    ("none", [[30.0, 6.0], [6.0, 2.0]]),
    ("chw", [[30 / 8, 6 / 8], [6 / 8, 2 / 8]]),   # C*H*W = 2*2*2 = 8
    ("hw", [[30 / 4, 6 / 4], [6 / 4, 2 / 4]]),    # H*W = 4
])
def test_gram_matrix_by_hand(normalization, expected):
    gram = gram_matrix(TINY, normalization)
    assert gram.shape == (1, 2, 2)
    torch.testing.assert_close(gram, t([expected]))


def test_gram_matrix_default_is_chw():
    torch.testing.assert_close(gram_matrix(TINY), gram_matrix(TINY, "chw"))


def test_gram_matrix_keeps_images_of_a_batch_apart():
    other = torch.zeros_like(TINY)
    other[0, 0] = 1.0  # channel 0 all ones: G00 = 4, the rest 0
    grams = gram_matrix(torch.cat([TINY, other]), "none")
    torch.testing.assert_close(grams[0], t([[30.0, 6.0], [6.0, 2.0]]))
    torch.testing.assert_close(grams[1], t([[4.0, 0.0], [0.0, 0.0]]))


def test_gram_matrix_unknown_normalisation_raises():
    with pytest.raises(ValueError, match="normalisation"):
        gram_matrix(TINY, "cw")


# ---------------------------------------------------------------- style loss

def test_style_loss_weighted_sum_and_per_layer_values():
    features = {
        "a": t([[[[1.0, 2.0]]]]),        # 1 channel, 1x2: Gram (none) = 1 + 4 = 5
        "b": t([[[[1.0]], [[2.0]]]]),    # 2 channels, 1x1: Gram = [[1, 2], [2, 4]]
        "ignored": torch.full((1, 1, 1, 1), 100.0),  # not in layer_weights: must not count
    }
    targets = {"a": t([[[3.0]]]), "b": torch.zeros(1, 2, 2)}
    total, per_layer = style_loss(features, targets, {"a": 0.5, "b": 2.0}, partial(gram_loss, normalization="none"))
    # a: (5 - 3)^2 = 4 (mean over one entry); b: mean(1, 4, 4, 16) = 25 / 4
    assert set(per_layer) == {"a", "b"}
    assert per_layer["a"].item() == pytest.approx(4.0)
    assert per_layer["b"].item() == pytest.approx(6.25)
    assert total.item() == pytest.approx(0.5 * 4.0 + 2.0 * 6.25)


def test_style_loss_uses_the_normalisation_it_is_given():
    features = {"a": t([[[[1.0, 2.0]]]])}  # Gram: none 5, chw and hw 5 / 2
    total, _ = style_loss(features, {"a": t([[[2.5]]])}, {"a": 1.0}, partial(gram_loss, normalization="chw"))
    assert total.item() == pytest.approx(0.0)
    total, _ = style_loss(features, {"a": t([[[2.5]]])}, {"a": 1.0}, partial(gram_loss, normalization="none"))
    assert total.item() == pytest.approx(2.5**2)


# ---------------------------------------------------------------- total variation

def test_tv_loss_by_hand():
    image = t([[[[0.0, 1.0], [2.0, 3.0]]]])
    # vertical differences (2, 2) -> mean square 4; horizontal (1, 1) -> 1
    assert tv_loss(image).item() == pytest.approx(5.0)


def test_tv_loss_counts_both_directions_equally():
    stripes = t([[[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]]])  # varies along x only
    horizontal = tv_loss(stripes).item()
    vertical = tv_loss(stripes.transpose(-1, -2)).item()  # the same pattern along y only
    assert horizontal == pytest.approx(1.0)  # differences +-1 along x, none along y
    assert vertical == pytest.approx(horizontal)
    assert tv_loss(torch.full((1, 3, 4, 4), 0.7)).item() == 0.0


# ---------------------------------------------------------------- the weighted objective

class IdentityFeatures(nn.Module):
    """Stands in for VGGFeatures: the image itself is the one feature map."""

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"relu1_1": image}


CONTENT = torch.linspace(0, 1, 75).reshape(1, 3, 5, 5)
STYLE = torch.linspace(1, 0, 75).reshape(1, 3, 5, 5) ** 2


def make_objective(**kwargs) -> StyleTransferObjective:
    objective = gatys_objective(IdentityFeatures(), {"relu1_1": 1.0}, {"relu1_1": 1.0}, **kwargs)
    objective.set_targets(CONTENT, [STYLE], [1.0])
    return objective


def test_objective_total_is_the_weighted_sum_of_its_terms():
    objective = make_objective(content_weight=2.0, style_weight=30.0, tv_weight=0.5, gram_normalization="hw")
    image = torch.rand(1, 3, 5, 5)
    losses = objective(image)
    assert {"total", "content", "style", "tv", "style/relu1_1"} <= set(losses)
    content = (image - CONTENT).pow(2).mean()
    style = (gram_matrix(image, "hw") - gram_matrix(STYLE, "hw")).pow(2).mean()
    assert losses["content"].item() == pytest.approx(content.item(), rel=1e-6)
    assert losses["style"].item() == pytest.approx(style.item(), rel=1e-6)
    assert losses["tv"].item() == pytest.approx(tv_loss(image).item(), rel=1e-6)
    expected = 2.0 * content + 30.0 * style + 0.5 * tv_loss(image)
    assert losses["total"].item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("direction", ["x", "y"])
def test_objective_applies_tv_weight_to_both_directions(direction):
    """The circulated bug weights one direction only: here each direction alone must scale."""
    image = torch.zeros(1, 3, 5, 5)
    if direction == "x":
        image[..., :, ::2] = 1.0
    else:
        image[..., ::2, :] = 1.0
    without = make_objective(tv_weight=0.0)(image)["total"].item()
    weighted = make_objective(tv_weight=3.0)(image)["total"].item()
    assert tv_loss(image).item() == pytest.approx(1.0)
    assert weighted - without == pytest.approx(3.0 * 1.0, rel=1e-5)


@pytest.mark.parametrize("kwargs", [
    {"style_weight": -1.0},
    {"content_weight": float("nan")},
    {"tv_weight": float("inf")},
    {"gram_normalization": "cw"},
    {"content_reduction": "sum"},
])
def test_objective_rejects_bad_settings(kwargs):
    with pytest.raises(UserInputError, match=next(iter(kwargs))):
        gatys_objective(IdentityFeatures(), {"relu1_1": 1.0}, {"relu1_1": 1.0}, **kwargs)


def test_objective_rejects_negative_layer_weight():
    with pytest.raises(UserInputError, match=r"layers\.style\.relu1_1"):
        gatys_objective(IdentityFeatures(), {"relu1_1": 1.0}, {"relu1_1": -0.5})


def test_objective_gradient_reaches_the_image():
    objective = make_objective(tv_weight=1.0)
    image = torch.rand(1, 3, 5, 5, requires_grad=True)
    objective(image)["total"].backward()
    assert image.grad is not None and math.isfinite(image.grad.abs().sum().item())
    assert image.grad.abs().sum().item() > 0


# ---------------------------------------------------------------- other style losses

def test_mean_std_loss_by_hand():
    features = t([[[[1.0, 3.0]], [[2.0, 2.0]]]])  # channel means (2, 2), stds (1, 0)
    mean, std = mean_std(features)
    assert torch.allclose(mean, t([[2.0, 2.0]]))
    assert torch.allclose(std, t([[1.0, 0.0]]), atol=1e-3)
    loss = mean_std_loss(features, t([[0.0, 2.0]]), t([[1.0, 2.0]]))
    # means: ((2-0)^2 + 0) / 2 = 2; stds: (0 + (0-2)^2) / 2 = 2
    assert loss.item() == pytest.approx(4.0, abs=1e-3)


def test_sqrtm_psd_squares_back():
    a = torch.randn(5, 5, dtype=torch.float64)
    spd = a @ a.T + 0.1 * torch.eye(5, dtype=torch.float64)
    root = sqrtm_psd(spd)
    assert torch.allclose(root @ root, spd, atol=1e-8)
    assert torch.allclose(root, root.T, atol=1e-10)


def test_wasserstein_between_gaussians_by_hand():
    """Diagonal covariances: W2^2 = |m1-m2|^2 + sum (s1 - s2)^2 over channels, here divided by C = 2."""
    features = t([[[[0.0, 2.0]], [[1.0, 1.0]]]])  # means (1, 1); covariance diag(1, 0)
    mean, cov = mean_covariance(features)
    assert torch.allclose(cov, t([[[1.0, 0.0], [0.0, 0.0]]]))
    target_mean, target_cov = t([[0.0, 1.0]]), torch.diag(t([4.0, 0.0])).unsqueeze(0)
    loss = wasserstein2_loss(features, target_mean, target_cov, sqrtm_psd(target_cov))
    # mean term 1; cov term: (1 - 2)^2 = 1 (std 1 vs 2); total 2, / C = 1
    assert loss.item() == pytest.approx(1.0, abs=1e-3)


def test_wasserstein_of_a_style_against_itself_is_zero_with_fewer_positions_than_channels():
    """20 positions for 512 channels: the product has ~490 zero eigenvalues whose rounding noise, square-rooted,
    made float32 come out far from 0; also under bf16 autocast, and the loss keeps the features' dtype."""
    torch.manual_seed(0)
    loss = WassersteinStyleLoss()
    style, other = torch.randn(1, 512, 4, 5), torch.randn(1, 512, 4, 5) + 0.5
    targets = loss.targets(loss.statistics(style))
    scale = loss(other, targets).item()
    assert scale > 0.1
    assert abs(loss(style, targets).item()) < 1e-6 * scale
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(style, targets)
    assert value.dtype == torch.float32 and abs(value.item()) < 1e-6 * scale


def test_wasserstein_gradient_matches_finite_differences_with_fewer_positions_than_channels():
    torch.manual_seed(0)
    target_mean, target_cov = mean_covariance(torch.randn(1, 6, 3, 3, dtype=torch.float64))
    target_cov_sqrt = sqrtm_psd(target_cov)
    features = torch.randn(1, 6, 2, 2, dtype=torch.float64, requires_grad=True)  # 4 positions, 6 channels
    assert torch.autograd.gradcheck(lambda f: wasserstein2_loss(f, target_mean, target_cov, target_cov_sqrt),
                                    (features,))
    exact = torch.autograd.grad(wasserstein2_loss(features, target_mean, target_cov, target_cov_sqrt), features)[0]
    single = features.detach().float().requires_grad_()
    wasserstein2_loss(single, target_mean.float(), target_cov.float(), target_cov_sqrt.float()).backward()
    assert torch.allclose(single.grad.double(), exact, rtol=1e-4, atol=1e-6)


def test_wasserstein_blend_is_the_gaussian_fit_of_the_pooled_features():
    """Two equal-size styles blended 0.5 / 0.5 give the mean and covariance of both feature maps side by side
    (crowsonkb's mixture), not the mean of the two covariances."""
    torch.manual_seed(0)
    a, b = torch.randn(1, 4, 3, 5), torch.randn(1, 4, 3, 5) * 2 + 1  # different means and spreads
    loss = WassersteinStyleLoss()
    blended = loss.blend([loss.statistics(a), loss.statistics(b)], [0.5, 0.5])
    pooled_mean, pooled_cov = mean_covariance(torch.cat([a, b], dim=-1).double())
    assert torch.allclose(blended["mean"], pooled_mean, atol=1e-12)
    assert torch.allclose(blended["cov"], pooled_cov, atol=1e-12)
    targets = loss.targets(blended)
    assert torch.allclose(targets["cov"], pooled_cov.float(), atol=1e-6)
    naive_cov = (loss.statistics(a)["cov"] + loss.statistics(b)["cov"]) / 2
    assert (pooled_cov - naive_cov).abs().max() > 0.1


def test_wasserstein_blend_with_one_style_or_unequal_weights():
    torch.manual_seed(1)
    a, b = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4) + 2
    loss = WassersteinStyleLoss()
    sa, sb = loss.statistics(a), loss.statistics(b)
    alone = loss.blend([sa], [1.0])
    assert torch.equal(alone["mean"], sa["mean"]) and torch.allclose(alone["cov"], sa["cov"], atol=1e-15)
    # 0.25 / 0.75 is the pool of one copy of a and three of b
    blended = loss.blend([sa, sb], [0.25, 0.75])
    pooled_mean, pooled_cov = mean_covariance(torch.cat([a, b, b, b], dim=-1).double())
    assert torch.allclose(blended["mean"], pooled_mean, atol=1e-12)
    assert torch.allclose(blended["cov"], pooled_cov, atol=1e-12)


STYLE_LOSSES = {"gram": GramStyleLoss, "mean_std": MeanStdStyleLoss, "wasserstein": WassersteinStyleLoss}


@pytest.mark.parametrize("name", STYLE_LOSSES)
def test_style_losses_are_zero_for_identical_features_and_positive_otherwise(name):
    torch.manual_seed(0)
    style_loss_fn = STYLE_LOSSES[name]()
    features = torch.rand(1, 8, 6, 6)
    targets = style_loss_fn.targets(style_loss_fn.statistics(features))
    assert style_loss_fn(features, targets).item() == pytest.approx(0.0, abs=1e-5)
    other = torch.rand(1, 8, 6, 6) * 2 + 0.5
    assert style_loss_fn(other, targets).item() > 1e-3


@pytest.mark.parametrize("name", STYLE_LOSSES)
def test_style_losses_give_finite_gradients(name):
    style_loss_fn = STYLE_LOSSES[name]()
    targets = style_loss_fn.targets(style_loss_fn.statistics(torch.rand(1, 8, 6, 6)))
    features = torch.rand(1, 8, 6, 6, requires_grad=True)
    style_loss_fn(features, targets).backward()
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0
