"""A dashboard for a sweep: python scripts/dashboard.py [SWEEP_DIR] [--sync] [--entity E] [--project P]

Writes dashboard.html (the runs' settings, results table with images, curves: opens in any browser)
and wandb_report.json (the spec of a W&B Report for the sweep's group) into the directory (the latest
multirun under outputs/multiruns when none is given). When logged in to W&B it also saves the report
and prints its URL; --sync first uploads the runs' offline W&B logs with `wandb sync`.
"""

import argparse
import sys
from pathlib import Path

from nst_research.errors import UserInputError, one_line_errors


@one_line_errors
def main() -> int:
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
        raise UserInputError('the dashboard needs wandb-workspaces; install it with pip install -e ".[dashboard]"'
                             ) from None
    directory = args.directory or latest_sweep()
    page, spec, url = dashboard(directory, sync_runs=args.sync, entity=args.entity, project=args.project)
    print(f"wrote {page} and {spec}" + (f"; W&B report: {url}" if url else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
