"""Batched sweeps (`batch_sweep=true`): one batch stands for separate runs, element by element."""

import csv
import json

import pytest
import torch
import yaml
from PIL import Image

from nst_research.errors import UserInputError
from nst_research.nst.task import run as run_nst_task
from nst_research.nst.task import summary
from nst_research.tracking.compare import compare


def run_style_transfer(cfg):
    """Run the task; its results as results.json holds them."""
    return run_nst_task(cfg).to_dict()


SIZE, STEPS = 32, 4
WEIGHTS = [1e4, 1e5, 1e6, 1e7]
COMMON = [f"image_size={SIZE}", f"iterations={STEPS}", "save_every=2", "+trainer.enable_progress_bar=false"]
STYLE_WEIGHTS = "style_weight=[" + ",".join(str(w) for w in WEIGHTS) + "]"


@pytest.fixture(scope="module")
def adam_sweep(tmp_path_factory, compose_at):
    """A batched Adam sweep of four style weights (W&B offline and CSV), and the four runs it stands for."""
    root = tmp_path_factory.mktemp("adam_sweep")
    batched = run_nst_task(compose_at(["optimizer=adam", *COMMON, "logger=wandb", "batch_sweep=true",
                                       STYLE_WEIGHTS], root / "batch"))
    separate = [run_style_transfer(compose_at(["optimizer=adam", *COMMON, "logger=none", f"style_weight={w}"],
                                              root / f"separate_{i}")) for i, w in enumerate(WEIGHTS)]
    return root / "batch", batched, separate


def test_final_losses_agree_with_separate_runs(adam_sweep):
    """oneDNN picks its convolution algorithm by batch size, so the losses agree to about 1e-7, not bit for bit."""
    _, batched, separate = adam_sweep
    batched = batched.to_dict()
    assert len(batched["runs"]) == len(separate) == len(WEIGHTS)
    for element, alone in zip(batched["runs"], separate):
        assert element["status"] == "completed" and element["steps"] == STEPS
        assert set(element["final_losses"]) == set(alone["final_losses"])
        for term, value in alone["final_losses"].items():
            assert element["final_losses"][term] == pytest.approx(value, rel=1e-4, abs=1e-12), term
    totals = [r["final_losses"]["total"] for r in batched["runs"]]
    assert totals == sorted(totals) and totals[-1] > 100 * totals[0]  # each element kept its own style weight


def test_without_onednn_a_batch_is_bitwise_the_separate_runs(compose_at, tmp_path, monkeypatch):
    """SGD from noise, one seed per element: with PyTorch's reference convolutions on one thread the batch
    computes exactly what the separate runs compute. (On some CPUs, Intel's with AVX-512 among them, the
    reference convolution's matrix products split their sums differently over threads for one image and
    for a batch: about 1e-7 apart, as with oneDNN.)"""
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        common = ["optimizer=sgd", "init=noise", *COMMON, "logger=none"]
        seeds = [0, 1, 2, 3]
        batched = run_style_transfer(compose_at([*common, "batch_sweep=true", STYLE_WEIGHTS, "seed=[0,1,2,3]"],
                                                tmp_path / "batch"))
        separate = [run_style_transfer(compose_at([*common, f"style_weight={w}", f"seed={s}"], tmp_path / str(s)))
                    for w, s in zip(WEIGHTS, seeds)]
    finally:
        torch.set_num_threads(threads)
    for element, alone in zip(batched["runs"], separate):
        assert element["initial_losses"] == alone["initial_losses"]
        assert element["final_losses"] == alone["final_losses"]
    assert len({r["initial_losses"]["content"] for r in separate}) == len(seeds)  # the seeds made different starts


def test_each_element_is_a_run_directory_of_its_own(adam_sweep):
    sweep_dir, batched, separate = adam_sweep
    groups, names = set(), []
    for b, (weight, results) in enumerate(zip(WEIGHTS, batched.to_dict()["runs"])):
        run_dir = sweep_dir / str(b)
        assert json.loads((run_dir / "results.json").read_text()) == results
        assert set(results) == set(separate[b])
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["style_weight"] == weight and config["batch_sweep"] is False
        assert config["output_dir"] == str(run_dir)
        for name in ("result.png", "content.png", "style.png", "intermediate/step_00000.png",
                     "intermediate/step_00002.png"):
            with Image.open(run_dir / name) as image:
                assert max(image.size) == SIZE, name
        with open(run_dir / "csv" / "metrics.csv", newline="") as f:
            logged = [row for row in csv.DictReader(f) if row["loss/total"]]
        assert [int(row["step"]) for row in logged] == list(range(1, STEPS + 1))
        offline = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(offline) == 1, f"element {b}: {offline}"
        groups.add(config["logger"]["wandb"]["group"])
        names.append(config["logger"]["wandb"]["name"])
    assert groups == {f"{sweep_dir.parent.name}_{sweep_dir.name}"}
    assert names == [f"style_weight={w}" for w in WEIGHTS]
    assert not (sweep_dir / "results.json").exists()  # the batch's directory is a sweep's, not a run's
    assert len({results["wall_time_s"] for results in batched.to_dict()["runs"]}) == 1  # the batch's, as documented


def test_each_element_is_judged_as_its_run_alone(adam_sweep):
    sweep_dir, batched, separate = adam_sweep
    for b, (element, alone) in enumerate(zip(batched.to_dict()["runs"], separate)):
        assert element["eval"]["judge"] == alone["eval"]["judge"]
        assert set(element["eval"]) == set(alone["eval"]) and "style" in element["eval"]
        for key, value in alone["eval"].items():
            if key != "judge":
                assert element["eval"][key] == pytest.approx(value, rel=1e-3, abs=1e-6), (b, key)
        with open(sweep_dir / str(b) / "csv" / "metrics.csv", newline="") as f:
            judged = [row for row in csv.DictReader(f) if row.get("eval/score")]
        assert len(judged) == 1 and float(judged[0]["eval/score"]) == pytest.approx(element["eval"]["score"])
    assert len({r["eval"]["style"] for r in batched.to_dict()["runs"]}) == len(WEIGHTS)  # each its own image


def test_console_has_a_line_per_element(adam_sweep):
    _, batched, _ = adam_sweep
    lines = summary(batched).splitlines()
    assert len(lines) == 1 + len(WEIGHTS)
    assert [line.split(":")[0].strip() for line in lines[1:]] == [f"style_weight={w}" for w in WEIGHTS]


def test_compare_treats_the_elements_as_jobs(adam_sweep):
    sweep_dir, _, _ = adam_sweep
    rows = [line for line in compare(sweep_dir).splitlines()[2:] if line.startswith("|")]
    assert [row.split("`")[1] for row in rows] == [f"style_weight={w}" for w in WEIGHTS]
    assert all("| completed |" in row for row in rows)


def test_a_diverging_element_stops_the_batch_and_is_named(run_cli, tmp_path):
    run_dir = tmp_path / "batch"
    result = run_cli("optimizer=adam", *COMMON, "logger=none", "batch_sweep=true", "style_weight=[1e4,1e39]",
                     f"hydra.run.dir={run_dir}", timeout=180)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "style_weight=1e+39: the total loss became inf at step 1" in errors[0], result.stderr
    statuses = [json.loads((run_dir / b / "results.json").read_text())["status"] for b in ("0", "1")]
    assert statuses == ["failed", "diverged"]
    assert (run_dir / ".hydra" / "config.yaml").is_file()  # the batch started: Hydra's record of it stays


@pytest.mark.parametrize("overrides, match", [
    (["batch_sweep=true", "optimizer=adam", STYLE_WEIGHTS, "seed=[0,1,2]"], "style_weight has 4, seed has 3 values"),
    (["batch_sweep=true", "optimizer=adam", STYLE_WEIGHTS, "multiscale.min_size=32"], "multiscale.min_size"),
    (["style_weight=[1e4,1e5]"], "add batch_sweep=true"),
    (["seed=[0,1]"], "add batch_sweep=true"),
    (["batch_sweep=true", "optimizer=adam", "model=vgg19_random", "seed=[0,1]"], "seeds would not each draw their own"),
])
def test_bad_batches_fail_in_one_line_before_any_output(compose_at, tmp_path, overrides, match):
    output_dir = tmp_path / "run"
    with pytest.raises(UserInputError, match=match) as error:
        run_style_transfer(compose_at([*overrides, "image_size=32", "logger=none"], output_dir))
    assert "\n" not in str(error.value)
    assert not output_dir.exists()


def test_lbfgs_batch_exits_2_with_one_line(run_cli, tmp_path):
    """The command line turns every refusal above into exit status 2 and one line, as here for L-BFGS."""
    run_dir = tmp_path / "x"
    result = run_cli("batch_sweep=true", "optimizer=lbfgs", STYLE_WEIGHTS, "image_size=32", "logger=csv",
                     f"hydra.run.dir={run_dir}", timeout=180)
    assert result.returncode == 2, f"exit {result.returncode}; stderr:\n{result.stderr[-3000:]}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "supports optimizer=adam or sgd" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not run_dir.exists(), f"left behind: {sorted(p.name for p in run_dir.iterdir())}"
