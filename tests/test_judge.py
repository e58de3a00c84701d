"""The judge judges: fixed, deterministic, zero where it should be, and ordered as pictures are."""

import pytest
import torch
from conftest import CONF_DIR
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.nn import functional as F

from nst_research.errors import UserInputError
from nst_research.judge.distances import sliced_wasserstein, weighted_quantiles
from nst_research.nst.images import load_image
from nst_research.parts import build


@pytest.fixture(scope="module")
def judge():
    return instantiate(OmegaConf.load(CONF_DIR / "judge" / "default.yaml"))


@pytest.fixture(scope="module")
def pair():
    return load_image("cat", 64), load_image("coffee", 64)


def test_weighted_quantiles_match_uniform_and_follow_weights():
    values = torch.tensor([[3.0, 1.0, 2.0, 4.0]])
    levels = torch.tensor([0.125, 0.375, 0.625, 0.875], dtype=torch.float64)
    assert weighted_quantiles(values, None, levels).tolist() == [[1.0, 2.0, 3.0, 4.0]]
    assert weighted_quantiles(values, torch.ones(4), levels).tolist() == [[1.0, 2.0, 3.0, 4.0]]
    # all the weight on the sample 4.0: every quantile is 4
    assert weighted_quantiles(values, torch.tensor([0.0, 0.0, 0.0, 1.0]), levels).tolist() == [[4.0] * 4]


def test_sliced_wasserstein_is_zero_for_equal_and_grows_with_a_shift():
    q = torch.randn(8, 64).sort(dim=1).values
    assert sliced_wasserstein(q, q) == 0
    assert sliced_wasserstein(q + 0.1, q) < sliced_wasserstein(q + 1.0, q)


def test_content_image_scores_content_zero_and_style_one(judge, pair):
    content, style = pair
    scores = judge(content, content, [style])
    assert scores["content"] == 0 and scores["content_raw"] == 0
    assert scores["content_ssim"] == pytest.approx(1.0)
    assert scores["style"] == pytest.approx(1.0) and scores["color"] == pytest.approx(1.0)


def test_style_image_scores_near_zero_style_against_itself(judge, pair):
    content, style = pair
    reference = judge.prepare(content, [style])
    resized = F.interpolate(style, size=content.shape[-2:], mode="bicubic", antialias=True).clamp(0, 1)
    scores = judge.score(resized, reference)
    assert scores["style"] < 0.1 and scores["color"] < 0.1
    assert scores["content"] == pytest.approx(1.0, abs=1e-6)  # the content reference is the style image


def test_noise_scores_worse_than_the_content_on_style_and_worse_than_the_style_on_content(judge, pair):
    content, style = pair
    reference = judge.prepare(content, [style])
    noise = judge.score(torch.rand(content.shape, generator=torch.Generator().manual_seed(0)), reference)
    assert noise["style"] > 1 and noise["content"] > 0.5 and noise["content_ssim"] < 0.2


def test_same_image_same_numbers_and_any_size(judge, pair):
    content, style = pair
    image = (0.5 * content + 0.5 * F.interpolate(style, size=content.shape[-2:])).clamp(0, 1)
    assert judge(image, content, [style]) == judge(image, content, [style])
    tall = load_image("astronaut", 40)[..., :40, :21]  # odd, narrow, smaller than the deepest layer needs
    scores = judge(tall, tall, [style])
    assert scores["content"] == 0 and all(isinstance(v, float) for v in scores.values())


def test_projections_are_fixed_by_the_seed(judge, pair):
    content, style = pair
    node = OmegaConf.load(CONF_DIR / "judge" / "default.yaml")
    image = torch.rand(content.shape, generator=torch.Generator().manual_seed(1))
    again, other = instantiate(node), instantiate(OmegaConf.merge(node, {"seed": 1}))
    assert judge(image, content, [style]) == again(image, content, [style])
    assert judge(image, content, [style])["style_raw"] != other(image, content, [style])["style_raw"]


def test_blend_weights_the_styles_and_masks_judge_each_region(judge, pair):
    content, coffee = pair
    hubble = load_image("hubble", 64)
    coffee_only = judge(coffee, content, [coffee, hubble], blend=[1.0, 0.0])
    hubble_only = judge(coffee, content, [coffee, hubble], blend=[0.0, 1.0])
    assert coffee_only["style_raw"] < hubble_only["style_raw"]
    # masks: the image is coffee on top, hubble below; judged with coffee on top it is closer than swapped
    h = content.shape[-2]
    top = torch.zeros(1, 1, *content.shape[-2:])
    top[..., : h // 2, :] = 1
    image = torch.cat([F.interpolate(coffee, size=content.shape[-2:])[..., : h // 2, :],
                       F.interpolate(hubble, size=content.shape[-2:])[..., h // 2:, :]], dim=-2)
    right = judge(image, content, [coffee, hubble], masks=[top, 1 - top])
    swapped = judge(image, content, [coffee, hubble], masks=[1 - top, top])
    assert right["style_raw"] < swapped["style_raw"]


def test_bad_settings_are_one_line(pair):
    node = OmegaConf.load(CONF_DIR / "judge" / "default.yaml")
    with pytest.raises(UserInputError, match="judge.projections=0"):
        build(OmegaConf.merge(node, {"projections": 0}))
