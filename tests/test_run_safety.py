"""A run's data survives concurrent writers, moved folders, full disks, silent W&B servers and corrupt files."""

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nst_research.nst.task import run as run_nst_task
from nst_research.tracking.runlock import RunBusy, RunLock

TINY_NST = ["optimizer=adam", "image_size=32", "iterations=2", "logger=csv"]


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
