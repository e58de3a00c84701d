"""Reliability: divergence, interruption by signal and resuming, input limits, determinism."""

import csv
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from PIL import Image

from nst_research.errors import RunDiverged, UserInputError
from nst_research.nst.images import load_image, load_mask
from nst_research.nst.module import StepBoundaryInterrupt, StyleTransferModule
from nst_research.nst.task import run as run_nst_task
from nst_research.precision import Precision


def run_style_transfer(cfg):
    """Run the task; its results as results.json holds them."""
    return run_nst_task(cfg).to_dict()


REPO = Path(__file__).resolve().parents[1]


def start_run(*overrides: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "scripts/run.py", *overrides], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "WANDB_MODE": "offline"})


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_image_and_checkpoint_and_the_run_resumes(signum, run_cli, tmp_path):
    run_dir = tmp_path / "interrupted"
    process = start_run("optimizer=adam", "image_size=48", "iterations=100000", "save_every=1", "logger=wandb",
                        f"hydra.run.dir={run_dir}")
    deadline = time.monotonic() + 120
    while not (run_dir / "intermediate" / "step_00003.png").exists():
        assert process.poll() is None and time.monotonic() < deadline, "run ended or never started"
        time.sleep(0.2)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "INFO:" not in stderr and "Received SIGTERM" not in stderr  # Lightning's notices go to app.log
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "interrupted"
    assert set(results["eval"]) >= {"content", "style"}  # the image it kept is judged
    stopped_at = results["steps"]
    assert 3 <= stopped_at < 100000
    assert (run_dir / "checkpoint.pt").is_file()
    with Image.open(run_dir / "result.png") as image:
        assert max(image.size) == 48

    resumed = run_cli(f"resume={run_dir}", f"iterations={stopped_at + 4}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed"
    assert results["steps"] == stopped_at + 4
    assert results["loss_evaluations"] == stopped_at + 4
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:  # every step once, before and after the resume
        steps = [int(row["step"]) for row in csv.DictReader(f) if row["loss/total"]]
    assert steps == list(range(1, stopped_at + 5))
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({run.name.rsplit("-", 1)[-1] for run in runs}) == 1  # one W&B run, resumed
    records = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(runs[-1])],
                             capture_output=True, text=True, check=True).stdout.splitlines()
    resumed_steps = [json.loads(r)["history"]["item"].get("trainer/global_step") for r in records
                     if json.loads(r)["type"] == "history" and "loss/total" in json.loads(r)["history"]["item"]]
    assert resumed_steps == list(range(stopped_at + 1, stopped_at + 5))  # the step axis goes on


def test_resume_with_group_overrides_changes_only_what_it_must(run_cli, tmp_path):
    """logger=none given to the run and to each resume: a refused resume changes nothing, an accepted one
    records only the new step count in config.yaml, and the run can be resumed again."""
    run_dir = tmp_path / "run"
    assert run_cli("optimizer=adam", "image_size=32", "iterations=3", "logger=none",
                   f"hydra.run.dir={run_dir}").returncode == 0
    original = (run_dir / "config.yaml").read_text()
    refused = run_cli(f"resume={run_dir}", "logger=none", "iterations=3")
    assert refused.returncode == 2 and "already has 3 steps" in refused.stderr
    assert (run_dir / "config.yaml").read_text() == original
    for iterations in (5, 6):
        resumed = run_cli(f"resume={run_dir}", "logger=none", f"iterations={iterations}")
        assert resumed.returncode == 0, resumed.stderr[-2000:]
    changed = [(a, b) for a, b in zip(original.splitlines(), (run_dir / "config.yaml").read_text().splitlines())
               if a != b]
    assert changed == [("iterations: 3", "iterations: 6")]
    other_group = run_cli(f"resume={run_dir}", "optimizer=lbfgs", "iterations=7")
    assert other_group.returncode == 2 and other_group.stderr.count("error:") == 1
    assert "logger=, trainer=" in other_group.stderr


def test_adam_resume_continues_exactly(compose_cfg, tmp_path):
    """Six steps in one go, or three and then a resume to six: the same image, bit for bit."""
    tiny = ["optimizer=adam", "image_size=32", "save_every=2", "logger=none", "ema_decay=0.5"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_style_transfer(compose_cfg([*tiny, "iterations=6"], straight))
    run_style_transfer(compose_cfg([*tiny, "iterations=3"], split))
    results = run_style_transfer(compose_cfg([*tiny, "iterations=6", f"resume={split}"], split))
    assert results["steps"] == 6 and results["status"] == "completed"
    assert (straight / "result.png").read_bytes() == (split / "result.png").read_bytes()
    straight_results = json.loads((straight / "results.json").read_text())
    assert results["final_losses"] == straight_results["final_losses"]
    assert results["eval"] == straight_results["eval"]  # judged again at the resumed run's end


def test_resume_refuses_what_it_cannot_continue(compose_cfg, run_cli, tmp_path):
    with pytest.raises(UserInputError, match="no checkpoint.pt"):
        run_style_transfer(compose_cfg([f"resume={tmp_path}"], tmp_path / "x"))
    done = tmp_path / "done"
    run_style_transfer(compose_cfg(["image_size=32", "iterations=2", "logger=none"], done))
    with pytest.raises(UserInputError, match="already has 2 steps"):
        run_style_transfer(compose_cfg(["image_size=32", "iterations=2", "logger=none", f"resume={done}"], done))
    result = run_cli(f"resume={tmp_path / 'nowhere'}")
    assert result.returncode == 2 and result.stderr.strip().startswith("error: resume=")


def test_divergence_stops_with_a_hint_and_keeps_the_last_finite_image(run_cli, tmp_path):
    """Pixels are clamped to [0, 1], so a finite objective cannot blow up by itself; weights that
    overflow float32 make the loss infinite, which must stop the run cleanly."""
    run_dir = tmp_path / "diverged"
    result = run_cli("style_weight=1e39", "image_size=32", "iterations=30", "logger=none", f"hydra.run.dir={run_dir}")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "lower them (style_weight=1e+39" in errors[0], errors
    assert "Traceback" not in result.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "diverged" and results["steps"] < 30
    assert "overflow" in results["error"]
    with Image.open(run_dir / "result.png") as image:  # the starting image, the last one with a finite loss
        assert max(image.size) == 32


class LossBecomesNaN(torch.nn.Module):
    """A stand-in objective whose loss is finite for its first `finite` evaluations and NaN after."""

    precision = Precision()

    def __init__(self, finite: int):
        super().__init__()
        self.finite, self.calls = finite, 0

    def set_targets(self, *args) -> None:
        pass

    def forward(self, image: torch.Tensor, exact: bool = False) -> dict[str, torch.Tensor]:
        self.calls += 1
        loss = (image - 0.5).pow(2).sum()
        return {"total": loss if self.calls <= self.finite else loss * float("nan")}


def test_divergence_checked_on_logged_steps_restores_the_last_checked_image(tmp_path):
    """With log_every_n_steps=4 the loss is read only at steps 4, 8, ...: a NaN at step 6 is found at
    step 8, and the image goes back to the one checked finite at step 4 (as it was before that step)."""
    init = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    snapshots = []
    module = StyleTransferModule(LossBecomesNaN(finite=1 + 5), torch.zeros(1, 3, 8, 8), [torch.zeros(1, 3, 8, 8)],
                                 [1.0], init, partial(torch.optim.SGD, lr=0.1), iterations=12, save_every=100,
                                 output_dir=tmp_path)  # evaluations: 1 at the start, then one per step
    module.on_train_batch_start = lambda batch, batch_idx: snapshots.append(module.image.detach().clone())
    trainer = pl.Trainer(max_epochs=1, logger=False, log_every_n_steps=4, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False)
    with pytest.raises(RunDiverged, match="at step 8"):
        trainer.fit(module)
    assert len(snapshots) == 8
    assert torch.equal(module.image.detach(), snapshots[3])  # before step 4, whose loss was checked finite
    assert not torch.equal(snapshots[3], snapshots[5])


def test_ctrl_c_during_a_step_takes_effect_between_steps():
    """A SIGINT inside the block lets the step finish; the next step's start raises; a second one raises at once;
    the previous handler is back afterwards."""
    previous = signal.getsignal(signal.SIGINT)
    with StepBoundaryInterrupt() as interrupts:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # delivered: Python runs the handler between bytecodes
        finished = True   # the rest of the step runs
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
        interrupts.check()  # handled once
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C during the same step stops it
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        interrupts.received = False
    assert finished and signal.getsignal(signal.SIGINT) is previous


def test_a_divergence_crosses_processes_with_its_step():
    """A benchmark's worker process hands a diverged run's error back pickled: it keeps its message and step."""
    diverged = pickle.loads(pickle.dumps(RunDiverged("the total loss became nan at step 67", 67)))
    assert isinstance(diverged, RunDiverged) and diverged.step == 67
    assert str(diverged) == "the total loss became nan at step 67"


def test_only_logged_steps_go_through_lightning_logging(tmp_path):
    """With log_every_n_steps=4 over 10 steps, the losses reach Lightning's logging at steps 4, 8 and the last
    (10) only: each logged value costs Python time that a GPU step does not have."""
    logged_at = []
    module = StyleTransferModule(LossBecomesNaN(finite=100), torch.zeros(1, 3, 8, 8), [torch.zeros(1, 3, 8, 8)],
                                 [1.0], torch.rand(1, 3, 8, 8), partial(torch.optim.SGD, lr=0.1), iterations=10,
                                 save_every=100, output_dir=tmp_path)
    log_dict = module.log_dict
    module.log_dict = lambda values, **kwargs: (logged_at.append(module.run_step), log_dict(values, **kwargs))
    trainer = pl.Trainer(max_epochs=1, logger=False, log_every_n_steps=4, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(module)
    assert sorted(set(logged_at)) == [4, 8, 10]
    assert trainer.callback_metrics["step"].item() == 10  # the last step's values are the ones left


def test_image_over_the_megapixel_limit_names_the_override(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (2000, 1000)).save(path)
    with pytest.raises(UserInputError, match=r"2 MP\), over max_megapixels=1; .* max_megapixels=2"):
        load_image(str(path), 64, max_megapixels=1)
    assert load_image(str(path), 64, max_megapixels=2).shape[-1] == 64


def test_colour_mask_is_refused_and_grey_mask_accepted(tmp_path):
    colour, grey = tmp_path / "colour.png", tmp_path / "grey.png"
    Image.new("RGB", (32, 32), (255, 0, 0)).save(colour)
    Image.new("L", (32, 32), 128).save(grey)
    with pytest.raises(UserInputError, match="in colour"):
        load_mask(str(colour), (16, 16))
    assert load_mask(str(grey), (16, 16)).mean().item() == pytest.approx(128 / 255, abs=1e-3)


def test_deterministic_flag_reaches_the_trainer(compose_cfg):
    assert compose_cfg(["deterministic=true"]).trainer.deterministic is True
    assert compose_cfg().trainer.deterministic is False


def test_unwritable_wandb_directory_never_stops_the_run(run_cli, tmp_path):
    """W&B cannot create its directory (a file sits where it should go): it logs elsewhere (W&B falls back
    to a temporary directory) or not at all; either way one notice says where, and local outputs are intact."""
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file, so nothing can be created under it")
    run_dir = tmp_path / "run"
    result = run_cli("image_size=32", "iterations=2", f"logger.wandb.save_dir={blocker}/wandb",
                     f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    notices = [line for line in result.stderr.splitlines() if line.startswith("W&B")]
    assert len(notices) == 1, result.stderr[-2000:]
    assert json.loads((run_dir / "results.json").read_text())["status"] == "completed"
    assert (run_dir / "result.png").is_file() and (run_dir / "csv" / "metrics.csv").is_file()
