"""Compare the runs of a sweep: python scripts/compare.py [SWEEP_OR_RUN_DIR]

Writes comparison.md, contact_sheet.png, curves.png and, when the runs were judged, tradeoff.png into the
directory (the latest multirun under outputs/multiruns when none is given) and prints the table with what
it is ranked by.
"""

import argparse
import sys
from pathlib import Path

from nst_research.errors import UserInputError, environment_fault
from nst_research.tracking.compare import compare, latest_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", nargs="?", type=Path,
                        help="a multirun or run directory (default: the latest multirun)")
    args = parser.parse_args()
    try:
        directory = args.directory or latest_sweep()
        print(compare(directory))
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:  # a read-only or full folder: the machine's fault, not the input's
        if environment_fault(error) is None:
            raise
        print(f"error: {environment_fault(error)}", file=sys.stderr)
        sys.exit(1)
    names = ["comparison.md", "contact_sheet.png", "curves.png", "tradeoff.png"]
    print("wrote " + ", ".join(str(directory / name) for name in names if (directory / name).is_file()))


if __name__ == "__main__":
    main()
