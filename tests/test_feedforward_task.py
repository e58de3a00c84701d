"""End to end: `python scripts/run.py task=feedforward ...` with a tiny budget (32 px, a narrow network, shallow
layers, a few steps): the run directory, results.json, validation after the last step, checkpoints, W&B,
stylising from the run directory, Ctrl-C and resume, and bad input."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from PIL import Image

from nst_research.errors import UserInputError
from nst_research.feedforward.checkpoint import load_network
from nst_research.feedforward.stylize import main as stylize
from nst_research.feedforward.task import run as run_feedforward
from nst_research.nst.images import load_image

STEPS, SIZE = 6, 32
TINY = ["task=feedforward", f"image_size={SIZE}", "layers=shallow", "network.width=4", "network.blocks=1",
        "photos.batch_size=2", "optimizer.lr=3e-3", f"trainer.max_steps={STEPS}", "trainer.val_check_interval=4",
        "sample_every=4", "trainer.log_every_n_steps=1"]
TERMS = {"total", "content", "style", "tv", "style/relu1_1", "style/relu2_1", "style/relu3_1"}
TESTS = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))


class InterruptAt(pl.Callback):
    """Ctrl-C after step `at` (a KeyboardInterrupt, as Lightning receives it); `at: -1` never."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step == self.at:
            raise KeyboardInterrupt


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def wandb_records(run_dir: Path) -> list[dict]:
    (log_dir,) = (run_dir / "wandb").glob("offline-run-*")
    return [json.loads(line) for line in subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(log_dir)],
        capture_output=True, text=True, check=True).stdout.splitlines()]


@pytest.fixture(scope="module")
def cli_run(run_cli, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("feedforward") / "run"
    result = run_cli(*TINY, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return result, run_dir


def test_run_writes_a_run_directory(cli_run):
    result, run_dir = cli_run
    assert f"result: {run_dir / 'samples' / f'step_{STEPS:06d}.png'}  held-out total loss" in result.stdout
    for name in ("config.yaml", "results.json", "csv/metrics.csv"):
        assert (run_dir / name).is_file(), name
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [
        "step_000000.png", "step_000004.png", f"step_{STEPS:06d}.png"]  # start, every 4 steps, end
    grid = Image.open(run_dir / "samples" / f"step_{STEPS:06d}.png")
    assert grid.size == (2 * (SIZE + 2) + 2,) * 2  # the two held-out images over their stylisations
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1


def test_the_console_counts_steps_and_app_log_keeps_the_run(cli_run):
    """The budget is in steps: the bar reads `Step ... 6/6`, not `Epoch 0/-2`; app.log keeps the console's lines."""
    result, run_dir = cli_run
    bar = [line for line in result.stdout.replace("\r", "\n").splitlines() if f"{STEPS}/{STEPS}" in line]
    assert bar and bar[-1].startswith("Step") and "Epoch" not in result.stdout
    assert "INFO" not in result.stdout + result.stderr
    log = (run_dir / "app.log").read_text()
    assert "W&B: WANDB_MODE=offline; logging offline to" in log  # the notice on the console
    assert f"result: {run_dir / 'samples' / f'step_{STEPS:06d}.png'}" in log


def test_results_json_and_the_loss_falls(cli_run):
    _, run_dir = cli_run
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["status"], results["task"], results["steps"], results["processes"]) == (
        "completed", "feedforward", STEPS, 1)
    assert (results["style"], results["image_size"], results["seed"]) == (["coffee"], SIZE, 0)
    assert results["result"] == f"samples/step_{STEPS:06d}.png" and results["wall_time_s"] > 0
    initial, final = results["initial_losses"], results["final_losses"]
    assert set(initial) == set(final) == TERMS
    assert final["total"] < 0.95 * initial["total"], (initial["total"], final["total"])
    assert results["checkpoints"] == {"best": "checkpoints/best.ckpt", "last": "checkpoints/last.ckpt"}
    val = {int(row["step"]): float(row["val/total"]) for row in metrics(run_dir) if row["val/total"]}
    assert results["best_val_total"] == pytest.approx(min(val.values()))
    assert val[STEPS] == pytest.approx(final["total"], rel=1e-4)  # the final network, scored on the same images


def test_the_held_out_stylisations_are_judged_at_each_validation_and_at_the_end(cli_run):
    _, run_dir = cli_run
    judged = json.loads((run_dir / "results.json").read_text())["eval"]
    assert judged["judge"]["name"] == "vgg19_sliced_wasserstein" and {"content", "style", "score"} <= set(judged)
    rows = metrics(run_dir)
    val = {int(row["step"]): row for row in rows if row.get("val/eval/score")}
    assert sorted(val) == [4, STEPS]  # each validation, the last one of the final network
    for key in ("content", "style", "score", "content_ssim"):
        assert float(val[STEPS][f"val/eval/{key}"]) == pytest.approx(judged[key], rel=1e-6), key
    assert [float(row["eval/style"]) for row in rows if row.get("eval/style")] == [pytest.approx(judged["style"])]


def test_validation_and_checkpoints_follow_the_last_step(cli_run):
    """Validation every 4 steps and after the last (6, not a multiple of 4); last.ckpt holds the final network and
    best.ckpt the one with the lowest validation loss."""
    _, run_dir = cli_run
    val = {int(row["step"]): float(row["val/total"]) for row in metrics(run_dir) if row["val/total"]}
    assert sorted(val) == [4, STEPS]
    train_steps = [int(row["step"]) for row in metrics(run_dir) if row["train/total"]]
    assert train_steps == list(range(1, STEPS + 1))
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == STEPS
    assert best["global_step"] == min(val, key=val.get)
    assert last["hyper_parameters"]["network"] == {
        "_target_": "nst_research.feedforward.network.JohnsonNet", "width": 4, "blocks": 1}


def test_wandb_gets_the_results_row_and_the_checkpoints_as_a_model(cli_run):
    _, run_dir = cli_run
    records = wandb_records(run_dir)
    table = next(r["history"]["item"] for r in records if r["type"] == "history"
                 and r["history"]["item"].get("results._type") == "table-file")
    assert table["results.nrows"] == 1
    (saved,) = run_dir.glob("wandb/offline-run-*/files/media/table/results_*.table.json")
    columns = json.loads(saved.read_text())["columns"]
    assert {"final/total", "final/style", "eval/score", "best_val_total", "steps", "image"} <= set(columns)
    models = [r["artifact"] for r in records if r["type"] == "artifact" and r["artifact"]["type"] == "model"]
    assert sorted((m["manifest"]["contents"][0]["path"], sorted(m["aliases"])) for m in models) == [
        ("best.ckpt", ["best", "latest"]), ("last.ckpt", ["latest"])]  # W&B's own "latest" of each version


def test_stylize_from_the_run_directory_alone(cli_run, tmp_path, capsys):
    """An image of a size and aspect the network never saw, stylised from the run directory (best.ckpt)."""
    _, run_dir = cli_run
    image = tmp_path / "wide.png"
    Image.new("RGB", (71, 45), (200, 120, 40)).save(image)
    assert stylize([str(run_dir), str(image), "--out", str(tmp_path / "out")]) == 0
    written = tmp_path / "out" / "wide_stylized.png"
    assert Image.open(written).size == (71, 45)
    with torch.no_grad():
        expected = load_network(run_dir / "checkpoints" / "best.ckpt")(load_image(str(image)))
    assert (load_image(str(written)) - expected).abs().max() <= 1 / 255 + 1e-6  # as saved to 8-bit PNG


def test_ctrl_c_keeps_a_checkpoint_and_resume_continues(run_cli, tmp_path):
    run_dir = tmp_path / "run"
    interrupted = run_cli(*TINY, "+callbacks.stop._target_=test_feedforward_task.InterruptAt", "+callbacks.stop.at=3",
                          "logger=csv", f"hydra.run.dir={run_dir}", env={"PYTHONPATH": TESTS})
    assert interrupted.returncode != 0
    assert f"interrupted: the run so far is saved in {run_dir}" in interrupted.stderr
    assert "weights_only" not in interrupted.stderr and "INFO" not in interrupted.stderr  # Lightning's, in app.log
    assert "`weights_only` was not set" in (run_dir / "app.log").read_text()
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["status"], results["steps"]) == ("interrupted", 3)
    assert results["checkpoints"]["interrupted"] == "checkpoints/interrupted.ckpt"
    assert results["result"] == "samples/step_000003.png" and (run_dir / results["result"]).is_file()
    saved = torch.load(run_dir / "checkpoints" / "interrupted.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 3

    resumed = run_cli(f"resume={run_dir}", "+callbacks.stop.at=-1", env={"PYTHONPATH": TESTS})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "exists and is not empty" not in resumed.stderr  # the run's own checkpoints/: nothing to warn of
    after = json.loads((run_dir / "results.json").read_text())
    assert (after["status"], after["steps"]) == ("completed", STEPS)
    assert after["initial_losses"] == results["initial_losses"]  # from the start of the run, not of the resume
    assert after["final_losses"]["total"] < after["initial_losses"]["total"]
    train_steps = [int(row["step"]) for row in metrics(run_dir) if row["train/total"]]
    assert train_steps[:2] == [1, 2] and train_steps[-3:] == [4, 5, 6]  # resumed after step 3, none repeated
    assert len(set(train_steps)) == len(train_steps)  # (step 3's row was being written when Ctrl-C came)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == STEPS


def test_ddp_on_two_cpu_processes_writes_one_run(run_cli, tmp_path):
    """trainer=ddp_cpu: two processes train, each on its own batches; rank zero writes the run's files."""
    run_dir = tmp_path / "run"
    result = run_cli(*TINY, "trainer=ddp_cpu", "trainer.devices=2", f"hydra.run.dir={run_dir}",
                     env={"OMP_NUM_THREADS": "1"})  # a thread per process, as torchrun sets it
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [line for line in result.stdout.splitlines() if line.startswith("result: ")]
    assert summaries == [line for line in summaries if line.startswith(f"result: {run_dir}")] and len(summaries) == 1
    assert [p.relative_to(run_dir) for p in run_dir.rglob("results.json")] == [Path("results.json")]
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["status"], results["processes"], results["steps"]) == ("completed", 2, STEPS)
    assert results["final_losses"]["total"] < results["initial_losses"]["total"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert len(list(run_dir.rglob("offline-run-*"))) == 1  # one W&B run, not one per process
    assert sorted(int(row["step"]) for row in metrics(run_dir) if row["val/total"]) == [4, STEPS]


def test_resume_without_steps_left_is_one_error(cli_run, compose_cfg, tmp_path):
    _, run_dir = cli_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir / "checkpoints", copy / "checkpoints")
    cfg = compose_cfg([*TINY, "logger=none", f"resume={copy}"], output_dir=copy)
    with pytest.raises(UserInputError, match=f"already has {STEPS} steps; ask for more, e.g. trainer.max_steps=12"):
        run_feedforward(cfg)
    assert sorted(p.name for p in copy.iterdir()) == ["checkpoints"]


@pytest.mark.parametrize("overrides, message", [
    (["style=/nonexistent/painting.jpg"], "/nonexistent/painting.jpg"),
    (["trainer.max_steps=0"], "trainer.max_steps=0 must be an integer >= 1, or -1 with trainer.max_epochs"),
    (["trainer.max_steps=-1"], "trainer.max_steps=-1 trains by epochs, but trainer.max_epochs=-1"),
    (["sample_every=0"], "sample_every=0 must be an integer >= 1"),
    (["image_size=8"], "image_size=8 must be an integer >= 16"),
    (["optimizer.lr=-1"], "optimizer: Invalid learning rate: -1"),
    (["network.width=0"], "network: JohnsonNet needs width >= 1"),
    (["photos.held_out=[]"], "photos.held_out is empty"),
    (["photos=folder", "photos.root=/nonexistent/coco"], "/nonexistent/coco"),
    (["style_weight=-1"], "style_weight"),
])
def test_bad_input_is_refused_before_anything_is_written(compose_cfg, tmp_path, overrides, message):
    run_dir = tmp_path / "run"
    with pytest.raises(UserInputError, match=message.replace("[", r"\[").replace(".", r"\.")):
        run_feedforward(compose_cfg([*TINY, "logger=none", *overrides], output_dir=run_dir))
    assert not run_dir.exists()


def test_bad_input_on_the_command_line_is_one_line(run_cli, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("task=feedforward", "style=/nonexistent/painting.jpg", f"hydra.run.dir={run_dir}")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "/nonexistent/painting.jpg" in line
    assert not run_dir.exists()
