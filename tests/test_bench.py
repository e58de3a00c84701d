"""The benchmark command keeps working: its quick mode prints the table and writes the JSON."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quick_gan_benchmark_writes_a_row_per_case(tmp_path):
    output = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "scripts/bench.py", "--quick", "--sections", "gan", "--output", str(output)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(output.read_text())["results"]
    assert {row["case"].split()[0] for row in results} == {"fc", "dcgan"}
    for row in results:
        assert row["steps_per_s"] > 0 and row["peak_memory_mib"] >= 0, row
        assert row["case"].split()[0] in done.stdout
