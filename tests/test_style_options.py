"""Style options: several styles with blend weights, style scale, initialisation from an image."""

import pytest
import torch
from conftest import gatys_objective, half_masks
from PIL import Image
from torchvision.transforms import functional as TF

from nst_research.errors import UserInputError
from nst_research.features import VGGFeatures
from nst_research.nst.images import load_image
from nst_research.nst.losses import gram_matrix
from nst_research.nst.styles import blend_weights, style_list
from nst_research.nst.task import run as run_nst_task


def run_style_transfer(cfg):
    """Run the task; its results as results.json holds them."""
    return run_nst_task(cfg).to_dict()


STYLES = ["coffee", "hubble"]


def test_blend_weights_default_equal_and_normalised():
    assert blend_weights(2, None) == [0.5, 0.5]
    assert blend_weights(2, [7, 3]) == pytest.approx([0.7, 0.3])
    assert blend_weights(3, [1, 1, 2]) == pytest.approx([0.25, 0.25, 0.5])


@pytest.mark.parametrize("blend", [[1.0], [0.2, 0.3, 0.5], [-1.0, 2.0], [0.0, 0.0], [float("nan"), 1.0]])
def test_bad_blend_weights_are_a_clear_error(blend):
    with pytest.raises(UserInputError, match="style_blend"):
        blend_weights(2, blend)


def test_style_list():
    assert style_list("coffee") == ["coffee"]
    assert style_list(["coffee", "hubble"]) == STYLES
    with pytest.raises(UserInputError):
        style_list([])


@pytest.mark.parametrize("style_loss", ["gram", "mean_std", "wasserstein"])
def test_blended_targets_are_the_weighted_mean_of_each_styles_statistics_or_their_mixture(style_loss):
    """Wasserstein's covariance is the mixture's: the weighted mean plus the spread between the styles' means,
    w_a w_b (m_a - m_b)(m_a - m_b)^T for two styles."""
    features = VGGFeatures(["relu1_1", "relu2_1"])
    objective = gatys_objective(features, {"relu2_1": 1.0}, {"relu1_1": 0.5, "relu2_1": 0.5}, style_loss=style_loss)
    content, style_a, style_b = (load_image(name, 32) for name in ["cat", *STYLES])
    style_b = TF.resize(style_b, list(style_a.shape[-2:]), antialias=True)
    objective.set_targets(content, [style_a, style_b], [0.7, 0.3])
    style_term = objective.terms["style"]
    blended = style_term.regions[0]["relu2_1"].as_dict()
    stats_a = style_term.loss.statistics(features(style_a)["relu2_1"])
    stats_b = style_term.loss.statistics(features(style_b)["relu2_1"])
    for key in stats_a:
        expected = 0.7 * stats_a[key] + 0.3 * stats_b[key]
        if style_loss == "wasserstein" and key == "cov":
            spread = stats_a["mean"] - stats_b["mean"]
            expected = expected + 0.7 * 0.3 * spread.unsqueeze(-1) * spread.unsqueeze(-2)
        assert torch.allclose(blended[key].double(), expected.double(), rtol=1e-4, atol=1e-6), key


def gram_distance(image: torch.Tensor, style: torch.Tensor, features: VGGFeatures) -> float:
    return sum((gram_matrix(features(image)[layer]) - gram_matrix(features(style)[layer])).pow(2).mean().item()
               for layer in ("relu1_1", "relu2_1", "relu3_1"))


@pytest.fixture(scope="module")
def blended_runs(tmp_path_factory, compose_at):
    """The same run with the first style's weight at 1, 0.5 and 0: {weight: (run dir, results)}."""
    runs = {}
    for weight in (1.0, 0.5, 0.0):
        output_dir = tmp_path_factory.mktemp(f"blend_{weight}")
        cfg = compose_at([f"style=[{','.join(STYLES)}]", f"style_blend=[{weight},{1 - weight}]", "image_size=48",
                          "iterations=30", "init=noise", "logger=none"], output_dir)
        runs[weight] = output_dir, run_style_transfer(cfg)
    return runs


def test_blending_moves_the_style_statistics_between_the_two_styles(blended_runs):
    features = VGGFeatures(["relu1_1", "relu2_1", "relu3_1"])
    style_a = load_image(str(blended_runs[1.0][0] / "style_0.png"))
    style_b = load_image(str(blended_runs[1.0][0] / "style_1.png"))
    distances = {}
    for weight, (output_dir, results) in blended_runs.items():
        assert results["status"] == "completed"
        result = load_image(str(output_dir / "result.png"))
        distances[weight] = (gram_distance(result, style_a, features), gram_distance(result, style_b, features))
    # more weight on the first style: nearer the first style, farther from the second
    assert distances[1.0][0] < distances[0.5][0] < distances[0.0][0]
    assert distances[1.0][1] > distances[0.5][1] > distances[0.0][1]


def test_blended_run_writes_each_style(blended_runs):
    output_dir, _ = blended_runs[0.5]
    assert (output_dir / "style_0.png").is_file() and (output_dir / "style_1.png").is_file()
    assert not (output_dir / "style.png").exists()


def test_wrong_number_of_blend_weights_fails_before_any_output(compose_cfg, tmp_path):
    cfg = compose_cfg([f"style=[{','.join(STYLES)}]", "style_blend=[1.0]", "logger=none"], tmp_path / "run")
    with pytest.raises(UserInputError, match="style_blend has 1 weights for 2 style"):
        run_style_transfer(cfg)
    assert not (tmp_path / "run").exists()


def test_style_scale_resizes_the_style_relative_to_the_output(compose_cfg, tmp_path):
    cfg = compose_cfg(["style_scale=0.5", "image_size=64", "iterations=1", "logger=none"], tmp_path)
    run_style_transfer(cfg)
    with Image.open(tmp_path / "style.png") as style, Image.open(tmp_path / "result.png") as result:
        assert max(style.size) == 32 and max(result.size) == 64


def test_style_scale_too_small_is_a_clear_error(compose_cfg, tmp_path):
    with pytest.raises(UserInputError, match="style_scale"):
        run_style_transfer(compose_cfg(["style_scale=0.01", "image_size=64", "logger=none"], tmp_path))


def test_init_from_an_image_file(compose_cfg, tmp_path):
    start = tmp_path / "start.png"
    Image.new("RGB", (40, 30), (255, 0, 0)).save(start)
    cfg = compose_cfg([f"init={start}", "image_size=48", "iterations=1", "logger=none"], tmp_path / "run")
    run_style_transfer(cfg)
    first = load_image(str(tmp_path / "run" / "intermediate" / "step_00000.png"))
    content = load_image(str(tmp_path / "run" / "content.png"))
    assert first.shape == content.shape
    assert torch.allclose(first[0, :, 4:-4, 4:-4].mean((1, 2)), torch.tensor([1.0, 0.0, 0.0]), atol=0.02)


# ---------------------------------------------------------------- colour preservation

def chroma_error(image: torch.Tensor, reference: torch.Tensor) -> float:
    from nst_research.nst.color import rgb_to_yiq

    return (rgb_to_yiq(image)[:, 1:] - rgb_to_yiq(reference)[:, 1:]).abs().mean().item()


@pytest.fixture(scope="module")
def color_runs(tmp_path_factory, compose_at):
    runs = {}
    for mode in ("none", "luminance"):
        output_dir = tmp_path_factory.mktemp(f"color_{mode}")
        run_style_transfer(compose_at([f"preserve_color={mode}", "image_size=48", "iterations=20", "logger=none"],
                                      output_dir))
        runs[mode] = output_dir
    return runs


def test_luminance_preservation_keeps_the_contents_chroma(color_runs):
    content = load_image("cat", 48)
    errors = {mode: chroma_error(load_image(str(path / "result.png")), content) for mode, path in color_runs.items()}
    assert errors["luminance"] < 0.01, errors
    assert errors["luminance"] * 5 < errors["none"], errors


def test_luminance_mode_shows_the_network_gray_inputs(color_runs):
    content = load_image(str(color_runs["luminance"] / "content.png"))
    assert torch.allclose(content[:, 0], content[:, 1], atol=1 / 255)
    assert torch.allclose(content[:, 1], content[:, 2], atol=1 / 255)


def test_histogram_matching_gives_the_style_the_contents_colour_mean_and_covariance():
    from nst_research.nst.color import color_statistics, match_color

    content, style = load_image("cat", 64), load_image("hubble", 64)
    matched = match_color(style, content)
    (content_mean, content_cov), (_, style_cov) = color_statistics(content), color_statistics(style)
    matched_mean, matched_cov = color_statistics(matched)
    assert torch.allclose(matched_mean, content_mean, atol=1e-4)
    assert torch.allclose(matched_cov, content_cov, rtol=0.01, atol=1e-6)
    assert not torch.allclose(style_cov, content_cov, atol=1e-3)  # the test is not vacuous


def test_unknown_preserve_color_is_a_clear_error(compose_cfg, tmp_path):
    with pytest.raises(UserInputError, match="preserve_color"):
        run_style_transfer(compose_cfg(["preserve_color=yes", "logger=none"], tmp_path))


# ---------------------------------------------------------------- per-layer weights and gradient normalisation

def test_layer_weights_lists():
    from nst_research.nst.terms import pair_layer_weights as layer_weights

    assert layer_weights("style", ["relu1_1", "relu2_1"], [0.7, 0.3]) == {"relu1_1": 0.7, "relu2_1": 0.3}
    assert layer_weights("style", ["relu1_1", "relu2_1"], None) == {"relu1_1": 0.5, "relu2_1": 0.5}
    with pytest.raises(UserInputError, match="style_weights"):
        layer_weights("style", ["relu1_1", "relu2_1"], [1.0])


def test_normalize_gradient_rescales_the_gradient_to_its_strength():
    from nst_research.nst.terms import NormalizeGradient

    x = torch.randn(1, 4, 5, 5, requires_grad=True)
    (NormalizeGradient.apply(x, 3.0) * torch.randn(1, 4, 5, 5) * 1000).sum().backward()
    assert x.grad.abs().sum().item() == pytest.approx(3.0, rel=1e-5)


def test_normalized_gradients_change_the_gradient_not_the_losses():
    features = VGGFeatures(["relu1_1", "relu2_1"])
    content, style = load_image("cat", 32), load_image("coffee", 32)
    grads, losses = {}, {}
    for normalize in (False, True):
        objective = gatys_objective(features, {"relu2_1": 1.0}, {"relu1_1": 0.5, "relu2_1": 0.5},
                                    normalize_gradients=normalize)
        objective.set_targets(content, [style], [1.0])
        image = torch.rand_like(content, generator=torch.Generator().manual_seed(0)).requires_grad_()
        out = objective(image)
        out["total"].backward()
        grads[normalize], losses[normalize] = image.grad, out["total"].item()
    assert losses[True] == pytest.approx(losses[False], rel=1e-6)
    assert not torch.allclose(grads[True], grads[False])


def test_per_layer_weight_lists_from_the_command_line(compose_cfg, tmp_path):
    cfg = compose_cfg(["layers.style=[relu1_1,relu3_1]", "layers.style_weights=[0.9,0.1]", "normalize_gradients=true",
                       "optimizer=adam", "image_size=48", "iterations=5", "logger=none"], tmp_path)
    results = run_style_transfer(cfg)
    assert set(k for k in results["final_losses"] if k.startswith("style/")) == {"style/relu1_1", "style/relu3_1"}
    assert results["final_losses"]["total"] < results["initial_losses"]["total"]


# ---------------------------------------------------------------- spatial control with masks

@pytest.fixture(scope="module")
def masked_run(tmp_path_factory, compose_at):
    """Coffee on the left half of a square content, hubble on the right half."""
    folder = tmp_path_factory.mktemp("masked")
    cfg = compose_at(["content=astronaut", f"style=[{','.join(STYLES)}]", half_masks(folder, 64), "image_size=64",
                      "iterations=40", "init=noise", "logger=none"], folder / "run")
    return folder / "run", run_style_transfer(cfg)


def test_each_masked_region_sits_nearer_its_own_style(masked_run):
    output_dir, results = masked_run
    assert results["status"] == "completed"
    features = VGGFeatures(["relu1_1", "relu2_1", "relu3_1"])
    result = load_image(str(output_dir / "result.png"))
    style_a = load_image(str(output_dir / "style_0.png"))
    style_b = load_image(str(output_dir / "style_1.png"))
    left, right = result[..., :, 4:28], result[..., :, 36:60]  # away from the seam
    assert gram_distance(left, style_a, features) < gram_distance(left, style_b, features)
    assert gram_distance(right, style_b, features) < gram_distance(right, style_a, features)


def test_wrong_number_of_masks_is_a_clear_error(compose_cfg, tmp_path):
    mask = tmp_path / "mask.png"
    Image.new("L", (8, 8), 255).save(mask)
    cfg = compose_cfg([f"style=[{','.join(STYLES)}]", f"masks=[{mask}]", "logger=none"], tmp_path / "run")
    with pytest.raises(UserInputError, match="masks has 1 mask"):
        run_style_transfer(cfg)
    assert not (tmp_path / "run").exists()


def test_masked_gram_of_a_full_mask_is_the_plain_gram():
    features = torch.rand(1, 4, 6, 6)
    assert torch.allclose(gram_matrix(features, "chw", torch.ones(1, 1, 6, 6)), gram_matrix(features, "chw"))
    half = torch.zeros(1, 1, 6, 6)
    half[..., :3] = 1
    assert torch.allclose(gram_matrix(features, "chw", half), gram_matrix(features[..., :3], "chw"), atol=1e-6)
