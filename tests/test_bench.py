"""The benchmark command keeps working: its quick mode prints every table and writes the JSON."""

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from nst_research.bench import nst, precision, startup

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # run with pytest -m slow; the quick precision test below keeps the timing loops and time to quality
def test_quick_benchmark_writes_every_section(tmp_path):
    output = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "scripts/bench.py", "--quick", "--sections", "nst", "gan", "time_to_quality",
                           "batched_sweep", "memory", "--output", str(output)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(output.read_text())
    steps = report["steps"]
    assert {row["case"] for row in steps if row["section"] == "nst"} == {
        f"{optimizer} 64px {loop}" for optimizer in ("lbfgs", "adam") for loop in ("framework", "plain")}
    assert {row["case"] for row in steps if row["section"] == "gan"} == {
        f"{gan} (bce, {precision}) {loop}" for gan in ("fc", "dcgan") for precision in ("32-true", "bf16-mixed")
        for loop in ("framework", "plain")}
    assert [row["case"] for row in steps if row["section"] == "memory"] == ["adam 128px framework"]
    for row in steps:
        assert row["median_step_ms"] > 0 and row["steps_per_s"] > 0 and row["peak_memory_mib"] >= 0, row
        assert row["case"] in done.stdout
    ratios = report["framework_overhead"]
    assert {row["case"] for row in ratios} == {"lbfgs 64px", "adam 64px"}
    assert all(row["ratio"] == row["framework_ms"] / row["plain_ms"] for row in ratios)
    gan_ratios = report["gan_overhead"]
    assert {row["case"] for row in gan_ratios} == {f"{gan} (bce, {precision})" for gan in ("fc", "dcgan")
                                                   for precision in ("32-true", "bf16-mixed")}
    assert all(row["ratio"] == row["framework_ms"] / row["plain_ms"] > 0 for row in gan_ratios)
    assert "GAN: framework vs plain PyTorch loop" in done.stdout
    default, *tried = report["time_to_quality"]
    assert default["candidate"].startswith("fp32 default") and default["steps"] == 10 and default["time_ratio"] == 1
    assert [row["candidate"] for row in tried] == list(nst.candidates(quick=True))
    for row in tried:
        assert row["target_loss"] == default["loss"] > 0 and row["pair"] == "cat:coffee", row
        assert (row["wall_s"] is None) == (row["time_ratio"] is None)  # reached the default's loss or not
        assert row["evaluations"] >= row["steps"] >= 1, row
    assert "time to quality" in done.stdout
    (batch,) = report["batched_sweep"]
    assert batch["batch"] == 4 and batch["speedup"] == batch["sequential_s"] / batch["batched_s"]


def test_quality_size_below_the_coarsest_scale_is_refused_in_one_line(tmp_path):
    output = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "scripts/bench.py", "--quality-sizes", "64", "--output", str(output)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].endswith("'64' must be an integer >= 128 (multi-scale starts there)")
    assert not output.exists()


@pytest.mark.slow  # run with pytest -m slow
def test_quick_startup_section_times_the_commands_and_each_phase_of_a_run(tmp_path):
    output = tmp_path / "bench.json"
    env = {**os.environ, "NST_RESEARCH_CACHE": str(tmp_path / "cache")}  # the first run hashes the weights file
    done = subprocess.run([sys.executable, "scripts/bench.py", "--quick", "--sections", "startup", "--output",
                           str(output)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    parts = defaultdict(dict)
    for row in json.loads(output.read_text())["startup"]:
        parts[row["part"]][row["what"]] = row
        assert row["min_s"] <= row["median_s"] <= row["max_s"], row
    assert set(parts["command"]) == {*startup.COMMANDS, startup.LIGHTNING_IMPORT}
    assert set(parts["run 64px"]) == {"whole run", "to the first step", "2 steps", "after the last step",
                                      "to the first step beyond import lightning.pytorch"}
    before, after = parts["before first step"], parts["after last step"]
    for phase in ("import torch", "import lightning (beyond torch)", "import wandb", "Hydra: compose the config",
                  "weights file: load; VGG and loss terms built", "images: read, resize", "W&B start (offline)",
                  "Lightning: Trainer construction", "step-0 image: PNG, checkpoint.pt, W&B"):
        assert before[phase]["calls"] >= 1, phase
    assert before["targets: VGG on content and style"]["calls"] == 1
    assert "losses of the image: VGG forward" not in before  # the start image's come from the first step
    assert before["weights file: sha256 check (cache look-up)"]["calls"] == 1
    assert "weights file: sha256 hashing" not in before  # the untraced run before it hashed the file once
    assert after["losses of the image: VGG forward"]["calls"] == 1  # the final losses
    for phase in ("results.json", "W&B results table and artifacts", "W&B finish; CSV flush", startup.PYTHON_EXIT):
        assert phase in after, phase
    assert "start-up" in done.stdout and "W&B start (offline)" in done.stdout


def test_quick_judge_section_gives_the_judges_share_of_a_run(tmp_path):
    output = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "scripts/bench.py", "--quick", "--sections", "judge", "--output",
                           str(output)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    [row] = json.loads(output.read_text())["judge"]
    assert row["size"] == 48 and row["prepare_s"] > 0 and row["score_s"] > 0 and row["step_s"] > 0
    share = 100 * (row["prepare_s"] + row["score_s"]) / (2 * row["step_s"])  # of the rounded times
    assert row["judge_share_pct"] == pytest.approx(share, rel=0.1)


def test_quick_precision_sections_time_each_precision_and_measure_bf16_in_fp32(tmp_path):
    output = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "scripts/bench.py", "--quick", "--sections", "precision", "time_to_quality",
                           "--quality-candidates", "precision", "--output", str(output)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(output.read_text())
    assert {row["case"] for row in report["steps"]} == {
        f"{optimizer} 64px {name}" for optimizer in ("lbfgs", "adam") for name in precision.PRECISIONS}
    speedups = report["precision_speedup"]
    assert len(speedups) == 8 and all(row["speedup"] > 0 for row in speedups)
    assert all(row["speedup"] == 1 for row in speedups if row["precision"] == "fp32")
    assert "precision: median step time" in done.stdout and "precision: bf16 + channels_last (" in done.stdout
    default, *tried = report["time_to_quality"]
    assert default["candidate"].startswith("fp32 default") and default["time_ratio"] == 1
    assert [row["candidate"] for row in tried] == ["bf16", "bf16 + channels_last"]
    for row in tried:  # each loss measured in fp32, against the fp32 default's
        assert row["target_loss"] == default["loss"] and row["loss"] > 0 and row["loss"] != default["loss"], row
        assert (row["wall_s"] is None) == (row["time_ratio"] is None)
