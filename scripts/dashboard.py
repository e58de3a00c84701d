"""A dashboard for a sweep: python scripts/dashboard.py [SWEEP_DIR] [--sync] [--entity E] [--project P]

Writes dashboard.html (the runs' settings, results table with images, curves: opens in any browser)
and wandb_report.json (the spec of a W&B Report for the sweep's group) into the directory (the latest
multirun under outputs/multiruns when none is given). When logged in to W&B it also saves the report
and prints its URL; --sync first uploads the runs' offline W&B logs with `wandb sync`.
"""

import argparse
import sys
from pathlib import Path

from nst_research.errors import UserInputError, environment_fault


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", nargs="?", type=Path,
                        help="a multirun or run directory (default: the latest multirun)")
    parser.add_argument("--sync", action="store_true", help="upload the runs' offline W&B logs first (wandb sync)")
    parser.add_argument("--entity", help="the W&B entity of the report (default: your default entity)")
    parser.add_argument("--project", help="the W&B project of the report (default: the runs' project)")
    args = parser.parse_args()
    try:  # after parsing, so --help is quick
        from nst_research.tracking.compare import latest_sweep
        from nst_research.tracking.dashboard import dashboard
    except ModuleNotFoundError as error:
        if error.name != "wandb_workspaces":
            raise
        print('error: the dashboard needs wandb-workspaces; install it with pip install -e ".[dashboard]"',
              file=sys.stderr)
        sys.exit(2)
    try:
        directory = args.directory or latest_sweep()
        page, spec, url = dashboard(directory, sync_runs=args.sync, entity=args.entity, project=args.project)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:  # a read-only or full folder: the machine's fault, not the input's
        if environment_fault(error) is None:
            raise
        print(f"error: {environment_fault(error)}", file=sys.stderr)
        sys.exit(1)
    print(f"wrote {page} and {spec}" + (f"; W&B report: {url}" if url else ""))


if __name__ == "__main__":
    main()
