"""scripts/bench.py --sections feedforward keeps working: its quick mode measures every case and writes the JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quick_feedforward_section(tmp_path):
    output = tmp_path / "bench.json"
    # One thread: this checks that the section works, and on a shared CPU two threads can wait on each other.
    done = subprocess.run([sys.executable, "scripts/bench.py", "--quick", "--sections", "feedforward",
                           "--devices", "cpu", "--output", str(output)],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(output.read_text())["steps"]
    assert [(row["section"], row["case"], row["device"], row["batch_size"]) for row in rows] == [
        ("feedforward", "train 32px 32-true", "cpu", 4), ("feedforward", "train 32px bf16-mixed", "cpu", 4),
        ("feedforward", "stylize 64px", "cpu", 1), ("feedforward", "stylize 128px", "cpu", 1)]
    for row in rows:
        assert row["steps"] == 3 and row["steps_per_s"] > 0 and row["median_step_ms"] > 0
        assert row["peak_memory_mib"] >= 0 and row["case"] in done.stdout
