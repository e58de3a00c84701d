"""Coarse-to-fine style transfer and the moving average of the iterates."""

import csv
import json
import math

import pytest
import torch
from PIL import Image

from nst_research.errors import UserInputError
from nst_research.nst.averaging import IterateAverage
from nst_research.nst.multiscale import scale_sizes, scale_steps, upsample
from nst_research.nst.task import run as run_nst_task


def run_style_transfer(cfg):
    """Run the task; its results as results.json holds them."""
    return run_nst_task(cfg).to_dict()


SQRT2 = math.sqrt(2)


@pytest.mark.parametrize("image_size, min_size, factor, expected", [
    (256, 128, SQRT2, [128, 181, 256]),
    (512, 128, SQRT2, [128, 181, 256, 362, 512]),
    (512, 100, 2.0, [128, 256, 512]),
    (64, 64, SQRT2, [64]),
    (300, None, SQRT2, [300]),
])
def test_scale_sizes_grow_by_the_factor_up_to_image_size(image_size, min_size, factor, expected):
    assert scale_sizes(image_size, min_size, factor) == expected


@pytest.mark.parametrize("min_size, factor, match", [
    (8, SQRT2, "multiscale.min_size=8"),
    (300, SQRT2, "multiscale.min_size=300"),
    (32, 1.0, "multiscale.factor=1.0"),
])
def test_bad_schedules_are_a_clear_error(min_size, factor, match):
    with pytest.raises(UserInputError, match=match):
        scale_sizes(256, min_size, factor)


def test_scale_steps():
    assert scale_steps([32, 45, 64], 10, None) == [10, 10, 10]
    assert scale_steps([32, 45, 64], 10, 3) == [3, 3, 10]
    with pytest.raises(UserInputError, match="multiscale.iterations=0"):
        scale_steps([32, 64], 10, 0)


def test_upsample_resizes_to_the_next_scale_and_stays_in_range():
    image = torch.rand(1, 3, 21, 32)
    like = torch.zeros(1, 3, 30, 45)
    out = upsample(image, like)
    assert out.shape == like.shape and out.min() >= 0 and out.max() <= 1
    # a smooth image survives the round trip almost unchanged
    ramp = torch.linspace(0, 1, 32).expand(1, 3, 21, 32)
    assert torch.allclose(upsample(upsample(ramp, like), ramp), ramp, atol=0.02)


def test_iterate_average_is_bias_corrected():
    x0, x1, x2 = torch.full((1, 1, 2, 2), 1.0), torch.full((1, 1, 2, 2), 3.0), torch.full((1, 1, 2, 2), 7.0)
    average = IterateAverage(x0, decay=0.5)
    assert torch.allclose(average.get(), x0)  # one update: the image itself, not (1 - decay) * image
    average.update(x1)
    average.update(x2)
    # weights 0.25, 0.5, 1 (decay**age), normalised
    assert torch.allclose(average.get(), (0.25 * x0 + 0.5 * x1 + 1.0 * x2) / 1.75)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, "high"])
def test_bad_ema_decay_is_a_clear_error(decay):
    with pytest.raises(UserInputError, match="ema_decay"):
        IterateAverage(torch.zeros(1), decay)


# ---------------------------------------------------------------- end to end

COARSE_STEPS, FINAL_STEPS = 3, 4


@pytest.fixture(scope="module")
def multiscale_run(tmp_path_factory, compose_at):
    output_dir = tmp_path_factory.mktemp("multiscale")
    cfg = compose_at(["optimizer=adam", "image_size=64", "multiscale.min_size=32",
                      f"multiscale.iterations={COARSE_STEPS}", f"iterations={FINAL_STEPS}", "save_every=2",
                      "logger=csv"], output_dir)
    return output_dir, run_style_transfer(cfg)


def test_multiscale_produces_the_final_size(multiscale_run):
    output_dir, results = multiscale_run
    with Image.open(output_dir / "result.png") as result:
        assert max(result.size) == 64
        assert list(result.size[::-1]) == results["image_size"]
    assert [max(scale["image_size"]) for scale in results["scales"]] == [32, 45, 64]
    assert [scale["steps"] for scale in results["scales"]] == [COARSE_STEPS, COARSE_STEPS, FINAL_STEPS]
    assert results["steps"] == 2 * COARSE_STEPS + FINAL_STEPS
    assert results["loss_evaluations"] == sum(scale["loss_evaluations"] for scale in results["scales"])
    assert results["final_losses"] == results["scales"][-1]["final_losses"]
    assert json.loads((output_dir / "results.json").read_text()) == results


def test_each_scale_starts_from_the_previous_result(multiscale_run):
    _, results = multiscale_run
    first, *finer = results["scales"]
    assert first["initial_losses"]["content"] == pytest.approx(0, abs=1e-6)  # init=content at the coarsest scale
    for scale in finer:  # upsampled stylised images, not the content again
        assert scale["initial_losses"]["content"] > 0
        assert scale["initial_losses"]["style"] < first["initial_losses"]["style"]


def test_each_scale_is_logged(multiscale_run):
    output_dir, results = multiscale_run
    with open(output_dir / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    step_rows = [r for r in rows if r.get("loss/total")]
    assert [int(r["step"]) for r in step_rows] == list(range(1, results["steps"] + 1))  # one axis across scales
    assert [float(r["scale/size"]) for r in step_rows] == [32.0] * 3 + [45.0] * 3 + [64.0] * 4
    for scale in results["scales"]:
        key = f"scale/{max(scale['image_size'])}px/total"
        logged = [float(r[key]) for r in rows if r.get(key)]
        assert logged == [pytest.approx(scale["final_losses"]["total"], rel=1e-5)], key


def test_each_coarser_scale_keeps_its_image(multiscale_run):
    output_dir, _ = multiscale_run
    for size in (32, 45):
        with Image.open(output_dir / "intermediate" / f"scale_{size}px.png") as image:
            assert max(image.size) == size
    # intermediate images count steps across scales
    assert (output_dir / "intermediate" / f"step_{2 * COARSE_STEPS + 2:05d}.png").is_file()


def test_bad_schedule_fails_before_any_output(compose_cfg, tmp_path):
    output_dir = tmp_path / "run"
    with pytest.raises(UserInputError, match="multiscale.min_size=128"):
        run_style_transfer(compose_cfg(["image_size=64", "multiscale.min_size=128", "logger=none"], output_dir))
    assert not output_dir.exists()


def test_ema_output_is_the_average_of_the_iterates(compose_cfg, tmp_path):
    """With ema_decay the saved result and its recorded loss are the averaged image's, not the last iterate's."""
    runs = {}
    for decay in ("null", "0.8"):
        output_dir = tmp_path / decay
        cfg = compose_cfg(["optimizer=adam", "image_size=32", "iterations=6", "save_every=10", "logger=none",
                           f"ema_decay={decay}"], output_dir)
        runs[decay] = run_style_transfer(cfg), output_dir
    plain, averaged = runs["null"][0], runs["0.8"][0]
    # the same iterates (same seed), so the averaged output lags behind: its loss is higher
    assert averaged["final_losses"]["total"] > plain["final_losses"]["total"]
    images = [torch.tensor(list(Image.open(d / "result.png").getdata()), dtype=torch.float) for _, d in runs.values()]
    assert not torch.equal(*images)


def test_carried_adam_moments_are_resized_to_each_new_scale(compose_cfg, tmp_path):
    """crowsonkb's warm start: the final scale's Adam goes on counting from the coarser scales' steps, with
    moments of the new size; without carrying, it starts from nothing."""
    steps = {}
    for carry in ("false", "true"):
        cfg = compose_cfg(["optimizer=adam", "image_size=64", "multiscale.min_size=32", "multiscale.iterations=3",
                           "iterations=4", "logger=none", f"multiscale.carry_optimizer_state={carry}"],
                          tmp_path / carry)
        run_style_transfer(cfg)
        state = torch.load(tmp_path / carry / "checkpoint.pt", weights_only=True)
        (moments,) = state["optimizer"]["state"].values()
        assert moments["exp_avg"].shape == moments["exp_avg_sq"].shape == state["image"].shape
        assert moments["exp_avg_sq"].min() >= 0
        steps[carry] = int(moments["step"])
    assert steps == {"false": 4, "true": 3 + 3 + 4}


def test_resized_state_keeps_what_is_not_image_shaped():
    from nst_research.nst.multiscale import resize_state

    state = {"state": {0: {"step": torch.tensor(7.0), "exp_avg": torch.ones(1, 3, 8, 8)}}, "param_groups": [{}]}
    resized = resize_state(state, [torch.zeros(1, 3, 16, 12)])
    assert resized["state"][0]["step"] == 7 and resized["param_groups"] == [{}]
    torch.testing.assert_close(resized["state"][0]["exp_avg"], torch.ones(1, 3, 16, 12))


@pytest.mark.parametrize("overrides, names", [
    (["optimizer=lbfgs"], "L-BFGS"),
    (["optimizer=adam", "parameterization=spectrum"], "Spectrum"),
])
def test_carrying_state_that_cannot_be_resized_is_refused_before_any_output(overrides, names, run_cli, tmp_path):
    output_dir = tmp_path / "run"
    done = run_cli("image_size=64", "multiscale.min_size=32", "multiscale.carry_optimizer_state=true", "logger=none",
                   *overrides, f"hydra.run.dir={output_dir}")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: multiscale.carry_optimizer_state=true") and names in line, line
    assert not output_dir.exists()
