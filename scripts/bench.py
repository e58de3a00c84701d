"""Benchmark: step times, peak memory and time to quality, printed as tables and written as JSON.

    python scripts/bench.py                            # nst, gan and time to quality (256 px, cat:coffee)
    python scripts/bench.py --sections time_to_quality --quality-sizes 256 512   # ... at 512 px too
    python scripts/bench.py --sections time_to_quality --quality-pairs astronaut:hubble rocket:retina
    python scripts/bench.py --sections batched_sweep memory  # batched sweeps; Adam at 1024, 2048 px
    python scripts/bench.py --sections feedforward     # feed-forward networks: training and stylising
    python scripts/bench.py --sections startup         # the command line's answers; a run's start and end
    python scripts/bench.py --sections judge           # what judging a run costs, at 128, 256 and 512 px
    python scripts/bench.py --sections precision       # step time in fp32, bf16, each with channels_last or not
    python scripts/bench.py --sections time_to_quality --quality-candidates precision --quality-sizes 256 512 \
        --quality-pairs cat:coffee astronaut:hubble rocket:retina   # bf16 to the fp32 default's loss
    python scripts/bench.py --quick                    # tiny sizes and few steps: checks that it works

Sections: `nst` (style-transfer step time, framework vs a plain PyTorch loop), `time_to_quality`
(steps and time for each candidate way to reach the default run's loss sooner), `gan` (GAN step time, framework
vs a plain PyTorch loop, in fp32 and bf16-mixed) and, not in the defaults, `batched_sweep` (a batched sweep vs the
same runs one after another), `memory` (peak memory of Adam at 1024 and 2048 px), `feedforward` (training steps
per second of a feed-forward network at 128 and 256 px in fp32 and bf16-mixed, and the time to stylise an image
at 256, 512 and 1024 px), `precision` (style-transfer step time in fp32 and bf16, with and without
channels_last), `judge` (the judge's reference and score against a default run's steps) and `startup`
(the command line's quick answers, and where a run's time goes before its first step and after its last). CUDA
rows appear when a GPU is present.
"""

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import torch

from nst_research.bench import batched, feedforward, gan, judge, nst, precision, startup
from nst_research.bench.measure import format_table

STEP_SECTIONS = {"nst": nst.run_section, "gan": gan.run_section, "memory": nst.memory_section,
                 "feedforward": feedforward.run_section, "precision": precision.run_section}
QUALITY_CANDIDATES = {"steps": nst.candidates, "precision": lambda quick: precision.QUALITY_CANDIDATES}
OTHER_SECTIONS = [  # name in the JSON, title, section
    ("time_to_quality", "time to quality: each candidate's steps, loss evaluations and wall time to the default "
     "run's final loss (wall_s '-': not reached; loss: its last at the final size, or its last finite one)",
     lambda args: nst.quality_section(args.devices, args.quick, args.quality_sizes, args.quality_pairs,
                                      args.quality_budget, QUALITY_CANDIDATES[args.quality_candidates](args.quick))),
    ("batched_sweep", "batched sweep of 4 style weights (Adam) vs the same 4 runs one after another (wall time)",
     lambda args: batched.run_section(args.devices, args.quick)),
    ("judge", "judge: building it, its reference and one score, against a default run's steps at the same size "
     "(median of the rounds)", lambda args: judge.run_section(args.devices, args.quick)),
    ("startup", "start-up: the command line's answers, and a run's time before its first step and after its last "
     "(fresh processes, median of the rounds)", lambda args: startup.run_section(args.quick)),
]
SECTIONS = [*STEP_SECTIONS, "time_to_quality", "batched_sweep", "judge", "startup"]
DEFAULT_SECTIONS = ["nst", "gan", "time_to_quality"]


def quality_size(text: str) -> int:
    """A `--quality-sizes` value: an integer no smaller than the multi-scale schedule's coarsest size."""
    smallest = nst.MULTISCALE_MIN_SIZE
    if not text.isdigit() or int(text) < smallest:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= {smallest} (multi-scale starts there)")
    return int(text)


def pair(text: str) -> tuple[str, str]:
    """A `--quality-pairs` value: content:style."""
    content, colon, style = text.partition(":")
    if not (colon and content and style):
        raise argparse.ArgumentTypeError(f"{text!r} must be content:style, e.g. cat:coffee")
    return content, style


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=DEFAULT_SECTIONS)
    parser.add_argument("--quality-sizes", nargs="+", type=quality_size, default=[256],
                        help="sizes for time to quality")
    parser.add_argument("--quality-pairs", nargs="+", type=pair, default=[("cat", "coffee")],
                        help="content:style pairs for time to quality (sample names or paths)")
    parser.add_argument("--quality-candidates", choices=list(QUALITY_CANDIDATES), default="steps",
                        help="time to quality: the ways to fewer steps (multi-scale, L-BFGS settings, "
                             "parameterizations), or other precisions (bf16, bf16 + channels_last)")
    parser.add_argument("--quality-budget", type=float, default=1.0,
                        help="time to quality: each candidate stops after this many times the default run's time")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps: checks that it works")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"],
                        default=["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    parser.add_argument("--output", type=Path, default=Path("outputs/bench/bench.json"))
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-case "GPU available" lines
    report = {
        "quick": args.quick,
        "elapsed_s": {},
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
                        "torch_threads": torch.get_num_threads(), "processor": platform.processor(),
                        "cuda": torch.cuda.get_device_name() if "cuda" in args.devices else None},
    }
    started = time.perf_counter()
    steps = []
    for name in [name for name in args.sections if name in STEP_SECTIONS]:
        start = time.perf_counter()
        steps += STEP_SECTIONS[name](args.devices, args.quick)
        report["elapsed_s"][name] = time.perf_counter() - start
    if steps:
        report["steps"] = [row.as_dict() for row in steps]
        print(format_table(report["steps"]), end="\n\n")
    if any(row.section == "nst" for row in steps):
        report["framework_overhead"] = nst.overhead(steps)
        print("framework vs plain PyTorch loop (median step time)")
        print(format_table(report["framework_overhead"]), end="\n\n")
    if any(row.section == "precision" for row in steps):
        report["precision_speedup"] = precision.versus_fp32(steps)
        print("precision: median step time, and fp32's over it (above 1: faster than fp32)")
        print(format_table(report["precision_speedup"]), end="\n\n")
    if any(row.section == "gan" for row in steps):
        report["gan_overhead"] = gan.overhead(steps)
        print("GAN: framework vs plain PyTorch loop (mean step time, logged steps included)")
        print(format_table(report["gan_overhead"]), end="\n\n")
    for name, title, section in OTHER_SECTIONS:
        if name in args.sections:
            start = time.perf_counter()
            report[name] = section(args)
            report["elapsed_s"][name] = time.perf_counter() - start
            print(title)
            print(format_table(report[name]), end="\n\n")
    total = time.perf_counter() - started
    print(f"{total / 60:.1f} min (" + ", ".join(f"{k} {v:.0f} s" for k, v in report["elapsed_s"].items()) + ")")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {args.output}")


if __name__ == "__main__":
    main()
