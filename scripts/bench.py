"""Benchmark: steps per second and peak memory, printed as a table and written as JSON.

    python scripts/bench.py                  # every section, CPU (and CUDA when present)
    python scripts/bench.py --sections gan --quick
"""

import argparse
import json
import logging
import os
import platform
from pathlib import Path

import torch

from nst_research.bench import gan
from nst_research.bench.measure import format_table

SECTIONS = {"gan": gan.run_section}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=sorted(SECTIONS), default=sorted(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="few steps per case (under a minute in all)")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"],
                        default=["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    parser.add_argument("--output", type=Path, default=Path("outputs/bench/bench.json"))
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-case "GPU available" lines
    rows = [row for name in args.sections for row in SECTIONS[name](args.devices, args.quick)]
    print(format_table(rows))
    report = {
        "quick": args.quick,
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
                        "torch_threads": torch.get_num_threads(),
                        "cuda": torch.cuda.get_device_name() if "cuda" in args.devices else None},
        "results": [row.as_dict() for row in rows],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {args.output}")


if __name__ == "__main__":
    main()
