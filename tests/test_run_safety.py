"""A run's data survives concurrent writers, moved folders, full disks, silent W&B servers and corrupt files."""

import contextlib
import csv
import errno
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf

from nst_research.errors import UserInputError
from nst_research.feedforward.stylize import main as stylize
from nst_research.feedforward.task import run as run_feedforward
from nst_research.nst.module import StyleTransferModule
from nst_research.nst.task import run as run_nst_task
from nst_research.tracking.checkpoints import AtomicCheckpointIO, RunModelCheckpoint
from nst_research.tracking.compare import compare
from nst_research.tracking.runlock import RunBusy, RunLock

REPO = Path(__file__).resolve().parents[1]
TINY_NST = ["optimizer=adam", "image_size=32", "iterations=2", "logger=csv"]
TINY_FEEDFORWARD = ["task=feedforward", "image_size=32", "layers=shallow", "network.width=4", "network.blocks=1",
                    "photos.batch_size=2", "trainer.max_steps=6", "trainer.val_check_interval=4", "sample_every=4",
                    "trainer.log_every_n_steps=1"]


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under `directory` by its relative path, with its content's hash."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def nst_run(compose_cfg, tmp_path) -> Path:
    """A finished two-step style transfer run."""
    run_dir = tmp_path / "run"
    run_nst_task(compose_cfg(TINY_NST, run_dir))
    return run_dir


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    with RunLock(tmp_path):
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(RunBusy, match=f"in use by process {os.getpid()}"), RunLock(tmp_path):
            pass
    with RunLock(tmp_path):  # released on leaving the block
        pass


def test_the_lock_goes_with_its_process_even_on_sigkill(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from nst_research.tracking.runlock import RunLock; "
                               f"lock = RunLock(Path({str(tmp_path)!r})).__enter__(); print('held', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunBusy, match=f"process {holder.pid}"), RunLock(tmp_path):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with RunLock(tmp_path):
        pass


def test_a_resume_of_a_run_in_use_is_one_line_and_changes_nothing(nst_run, run_cli):
    with RunLock(nst_run):
        before = snapshot(nst_run)
        result = run_cli(f"resume={nst_run}", "iterations=4")
        assert snapshot(nst_run) == before
    assert result.returncode == 1, result.stderr[-2000:]
    assert error_lines(result.stderr) == [f"error: {nst_run} is in use by process {os.getpid()} (a run or resume "
                                          "writing into it); wait for it to end, or stop it, then try again"]
    assert "Traceback" not in result.stderr


def test_a_copied_run_resumes_inside_the_copy_and_leaves_the_original_alone(nst_run, run_cli, tmp_path):
    original = snapshot(nst_run)
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(nst_run), str(copy)], check=True)
    result = run_cli(f"resume={copy}", "iterations=4")
    assert result.returncode == 0, result.stderr[-2000:]
    assert snapshot(nst_run) == original
    with open(copy / "csv" / "metrics.csv", newline="") as f:
        assert [int(row["step"]) for row in csv.DictReader(f) if row["loss/total"]] == [1, 2, 3, 4]
    saved = yaml.safe_load((copy / "config.yaml").read_text())
    assert saved["output_dir"] == saved["logger"]["csv"]["save_dir"] == str(copy)


def test_a_moved_feedforward_run_resumes_in_place_with_its_best_checkpoint(compose_cfg, run_cli, tmp_path):
    run_dir, moved = tmp_path / "run", tmp_path / "moved"
    run_feedforward(compose_cfg([*TINY_FEEDFORWARD, "logger=csv"], run_dir))
    run_dir.rename(moved)
    result = run_cli(f"resume={moved}", "trainer.max_steps=8")
    assert result.returncode == 0, result.stderr[-2000:]
    assert not run_dir.exists()
    results = json.loads((moved / "results.json").read_text())
    with open(moved / "csv" / "metrics.csv", newline="") as f:
        validations = [float(row["val/total"]) for row in csv.DictReader(f) if row.get("val/total")]
    assert results["steps"] == 8 and len(validations) == 3  # after steps 4, 6 and 8
    assert results["best_val_total"] == pytest.approx(min(validations))  # the moved run's best is remembered
    assert results["checkpoints"] == {"best": "checkpoints/best.ckpt", "last": "checkpoints/last.ckpt"}


def test_a_checkpoint_callback_restored_in_a_moved_folder_keeps_its_best(tmp_path):
    """Lightning's ModelCheckpoint forgets the best score of a checkpoint written in another folder and keeps
    that folder's path; the run's own callback reads the state as if written in its folder."""
    old, new = tmp_path / "old" / "checkpoints", tmp_path / "new" / "checkpoints"
    written = RunModelCheckpoint(dirpath=old, filename="best", monitor="val/total", save_top_k=1)
    written.best_model_score, written.best_model_path = torch.tensor(3.5), str(old / "best.ckpt")
    written.best_k_models = {str(old / "best.ckpt"): torch.tensor(3.5)}
    written.kth_best_model_path, written.last_model_path = str(old / "best.ckpt"), str(old / "last.ckpt")
    restored = RunModelCheckpoint(dirpath=new, filename="best", monitor="val/total", save_top_k=1)
    assert restored.state_key == ModelCheckpoint(dirpath=new, filename="best", monitor="val/total").state_key
    restored.load_state_dict(written.state_dict())
    assert restored.best_model_score.item() == 3.5
    assert (restored.best_model_path, restored.kth_best_model_path) == (str(new / "best.ckpt"),) * 2
    assert restored.last_model_path == str(new / "last.ckpt")
    assert list(restored.best_k_models) == [str(new / "best.ckpt")]


class FullDisk:
    """An object whose pickling fails as a full disk does, half-way through a checkpoint."""

    def __reduce__(self):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_checkpoint_write_leaves_the_previous_one_whole(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 4, "weights": torch.ones(100)}, path)
    before = path.read_bytes()
    with pytest.raises(OSError, match="No space left"):
        AtomicCheckpointIO().save_checkpoint({"global_step": 6, "weights": torch.ones(100), "x": FullDisk()}, path)
    assert path.read_bytes() == before and os.listdir(path.parent) == ["last.ckpt"]


@pytest.fixture(scope="module")
def feedforward_run(compose_at, tmp_path_factory) -> Path:
    """A finished six-step feed-forward run (checkpoints/best.ckpt and last.ckpt), to copy."""
    run_dir = tmp_path_factory.mktemp("feedforward") / "run"
    run_feedforward(compose_at([*TINY_FEEDFORWARD, "logger=csv"], run_dir))
    return run_dir


def test_resume_passes_over_a_damaged_newer_checkpoint_saying_so(feedforward_run, compose_cfg, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(feedforward_run, run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    damaged = run_dir / "checkpoints" / "interrupted.ckpt"
    damaged.write_bytes(last.read_bytes()[:1000])  # newer than last.ckpt, and truncated
    capsys.readouterr()
    results = run_feedforward(compose_cfg([*TINY_FEEDFORWARD, "logger=csv", "trainer.max_steps=7",
                                           f"resume={run_dir}"], run_dir))
    assert results.status == "completed" and results.steps == 7
    notices = [line for line in capsys.readouterr().err.splitlines() if line.startswith("resume:")]
    assert notices == [f"resume: cannot read checkpoint {damaged}: it is truncated, damaged or not a checkpoint "
                       "(PytorchStreamReader failed reading zip archive: failed finding central directory); "
                       f"continuing from {last}, the newest checkpoint that reads"]


def test_a_run_whose_checkpoints_are_all_damaged_is_one_line_naming_the_file(feedforward_run, nst_run, compose_cfg,
                                                                             tmp_path):
    run_dir = tmp_path / "feedforward"
    shutil.copytree(feedforward_run, run_dir)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(UserInputError, match=rf"^cannot read checkpoint {run_dir}/checkpoints/last.ckpt: it is "
                                             r"truncated, damaged or not a checkpoint \(EOFError\); no other "):
        run_feedforward(compose_cfg([*TINY_FEEDFORWARD, "trainer.max_steps=8", f"resume={run_dir}"], run_dir))
    checkpoint = nst_run / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:-100])
    with pytest.raises(UserInputError, match=f"^cannot read checkpoint {checkpoint}: it is truncated"):
        run_nst_task(compose_cfg([*TINY_NST, "iterations=4", f"resume={nst_run}"], nst_run))


class AnswersOnlyGet(http.server.BaseHTTPRequestHandler):
    """A W&B server that answers the reachability check and never answers W&B's own requests (POST /graphql)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def do_POST(self) -> None:
        time.sleep(600)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def silent_server():
    """A loopback W&B address whose server accepts every connection and never answers; its URL."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


@pytest.fixture
def stalling_server():
    """A loopback W&B address whose server answers GET and stalls on POST; its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AnswersOnlyGet)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run_with_wandb_at(url: str, run_cli, run_dir: Path) -> tuple[list[str], Path]:
    """A tiny run logging to W&B at `url` (online, with a key, a 2 s start timeout); its W&B notices and its one
    offline W&B run, checked to hold the run's steps."""
    result = run_cli(*TINY_NST[:-1], "logger=wandb", "logger.wandb.start_timeout=2", f"hydra.run.dir={run_dir}",
                     env={"WANDB_MODE": "online", "WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": url}, timeout=150)
    assert result.returncode == 0, result.stderr[-2000:]
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert not list((run_dir / "wandb").glob("run-*"))  # no folder of an attempt online
    records = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(offline)],
                             capture_output=True, text=True, check=True).stdout.splitlines()
    steps = [json.loads(r)["history"]["item"].get("trainer/global_step") for r in records
             if json.loads(r)["type"] == "history" and "loss/total" in json.loads(r)["history"]["item"]]
    assert steps == [1, 2]  # logged, ready for `wandb sync`
    return [line for line in result.stderr.splitlines() if line.startswith("W&B")], offline


def test_a_wandb_server_that_never_answers_is_not_waited_for(run_cli, silent_server, tmp_path):
    started = time.monotonic()
    notices, offline = run_with_wandb_at(silent_server, run_cli, tmp_path / "run")
    assert time.monotonic() - started < 60
    port = silent_server.rsplit(":", 1)[1]
    assert notices == [f"W&B: no answer from 127.0.0.1:{port} within 3 s; logging offline to {offline} "
                       "(upload later with `wandb sync <that dir>`)"]


@pytest.mark.slow
def test_a_wandb_start_that_stalls_gives_up_and_logs_offline(run_cli, stalling_server, tmp_path):
    """The server answers the check but not W&B: the start gives up after its timeout, and the run logs offline
    (W&B's own telemetry waits for the silent server for up to 20 s more at exit)."""
    started = time.monotonic()
    notices, offline = run_with_wandb_at(stalling_server, run_cli, tmp_path / "run")
    assert time.monotonic() - started < 120  # not W&B's 90 s per attempt
    assert len(notices) == 1 and notices[0].startswith("W&B: W&B failed to start (CommError: ")
    assert notices[0].endswith(f"; logging offline to {offline} (upload later with `wandb sync <that dir>`)")


def test_a_resume_change_reaches_what_the_run_uses(nst_run, run_cli):
    """save_every is read by the module through module.save_every: the resume derives it again."""
    result = run_cli(f"resume={nst_run}", "iterations=6", "save_every=2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (nst_run / "intermediate" / "step_00004.png").is_file()
    assert yaml.safe_load((nst_run / "config.yaml").read_text())["module"]["save_every"] == 2


def test_a_feedforward_resume_takes_its_own_tasks_keys(feedforward_run, run_cli, tmp_path):
    run_dir = tmp_path / "feedforward"
    shutil.copytree(feedforward_run, run_dir)
    result = run_cli(f"resume={run_dir}", "trainer.max_steps=8", "sample_every=1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (run_dir / "samples" / "step_000007.png").is_file()


@pytest.fixture
def gan_run_config(compose_cfg, tmp_path) -> Path:
    """A GAN run's folder as far as a resume reads it before its checkpoint: config.yaml with its options."""
    run_dir = tmp_path / "gan"
    config = OmegaConf.to_container(compose_cfg(["task=gan"], run_dir), resolve=True)
    config["choices"] = {"trainer": "default", "logger": "wandb", "task": "gan", "gan": "dcgan", "data": "mnist5k"}
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return run_dir


@pytest.mark.parametrize("run, override, message", [
    ("gan", "gan.lr=1e-4", "resume continues the run's gan.optimizer from its checkpoint, settings included; "
                           "gan.lr=1e-4 would change gan.optimizer"),
    ("gan", "iterations=10", "unknown key iterations"),
    ("gan", "style_weight=1e5", "unknown key style_weight"),
    ("feedforward", "+sample_every=1", "+sample_every=1 adds sample_every, which already exists; write sample_every=1"),
    ("feedforward", "optimizer.lr=0.1", "resume continues the run's optimizer from its checkpoint"),
    ("nst", "+foo=1", "resume changes the run's own settings; +foo=1 adds foo, which this nst run does not have"),
])
def test_a_resume_change_the_run_cannot_take_is_one_line(gan_run_config, feedforward_run, nst_run, run_cli,
                                                         run, override, message):
    run_dir = {"gan": gan_run_config, "feedforward": feedforward_run, "nst": nst_run}[run]
    before = snapshot(run_dir)
    result = run_cli(f"resume={run_dir}", override)
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1 and message in error_lines(result.stderr)[0], result.stderr
    assert snapshot(run_dir) == before


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 2 MB file system of its own (tmpfs), to fill or make read-only; skipped where it cannot be mounted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path) -> None:
    with open(disk / "filler", "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()


def data_of(run_dir: Path) -> dict[str, str]:
    """A run's files less its lock file (which holds the last writer's process id)."""
    return {name: digest for name, digest in snapshot(run_dir).items() if name != ".lock"}


def one_error_line(result: subprocess.CompletedProcess, status: int) -> str:
    assert result.returncode == status, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    return lines[0]


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(small_disk, compose_cfg, run_cli):
    run_dir = small_disk / "run"
    run_nst_task(compose_cfg(TINY_NST, run_dir))
    fill(small_disk)
    before = data_of(run_dir)
    resumed = run_cli(f"resume={run_dir}", "iterations=4")
    assert "no space left on the disk" in one_error_line(resumed, 1)
    assert data_of(run_dir) == before
    new = run_cli(*TINY_NST, f"hydra.run.dir={small_disk / 'new'}")
    assert one_error_line(new, 1) == "error: no space left on the disk; free some space, then run the command again"
    assert not (small_disk / "new").exists()  # no empty .hydra/config.yaml


def test_a_read_only_folder_is_one_line_in_every_command(small_disk, compose_cfg, run_cli, feedforward_run,
                                                         capsys):
    run_dir = small_disk / "run"
    run_nst_task(compose_cfg(TINY_NST, run_dir))
    image = run_dir / "content.png"
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    before = data_of(run_dir)
    resumed = run_cli(f"resume={run_dir}", "iterations=4")
    assert one_error_line(resumed, 1).startswith("error: the file system is read-only")
    new = run_cli(*TINY_NST, f"hydra.run.dir={small_disk / 'new'}")
    assert one_error_line(new, 1).startswith("error: the file system is read-only")
    compared = subprocess.run([sys.executable, "scripts/compare.py", str(run_dir)], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
    assert one_error_line(compared, 1).startswith("error: the file system is read-only")
    capsys.readouterr()
    assert stylize([str(feedforward_run), str(image), "--out", str(small_disk / "out")]) == 1
    assert capsys.readouterr().err.startswith("error: the file system is read-only")
    assert data_of(run_dir) == before


def test_a_damaged_results_json_is_one_line_naming_it(nst_run, compose_cfg):
    results = nst_run / "results.json"
    for content in ('{"status": "comp', "[]"):
        results.write_text(content)
        with pytest.raises(UserInputError, match=f"^cannot read {results}: it "):
            compare(nst_run)
        with pytest.raises(UserInputError, match=f"^cannot read {results}: it "):
            run_nst_task(compose_cfg([*TINY_NST, "iterations=4", f"resume={nst_run}"], nst_run))


@pytest.mark.parametrize("extra, message", [
    (["--out", "{image}"], "is a file; give a folder"),
    (["--size", "100000"], "content.png would be stylised at 100000x65625 (6562 MP), over --max-megapixels 100"),
])
def test_stylize_checks_its_output_before_it_starts(feedforward_run, nst_run, tmp_path, capsys, extra, message):
    image = nst_run / "content.png"
    capsys.readouterr()
    assert stylize([str(feedforward_run), str(image), *(arg.format(image=image) for arg in extra)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (Path.cwd() / "stylized").exists()


def test_a_resumed_optimizer_keeps_its_state_and_takes_the_new_settings(tmp_path):
    """Loading an optimizer's state also loads its settings; a resume that changes optimizer.lr must get it."""
    image = torch.rand(1, 3, 8, 8)
    earlier = torch.optim.Adam([torch.nn.Parameter(image.clone())], lr=0.1)
    earlier.param_groups[0]["params"][0].grad = torch.ones_like(image)
    earlier.step()
    module = StyleTransferModule(torch.nn.Identity(), image, [image], [1.0], image, partial(torch.optim.Adam, lr=0.5),
                                 iterations=1, save_every=1, output_dir=tmp_path, optimizer_state=earlier.state_dict())
    optimizer = module.configure_optimizers()
    assert optimizer.param_groups[0]["lr"] == 0.5
    assert optimizer.state_dict()["state"][0]["step"].item() == 1
