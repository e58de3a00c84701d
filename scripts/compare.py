"""Compare runs: python scripts/compare.py [SWEEP, RUN OR FOLDER OF RUNS]

Says first what the directory holds ("sweep of 4 runs", "one run", "folder of 7 runs (not one sweep)"), then
writes comparison.md, contact_sheet.png, curves.png and, when the runs were judged, tradeoff.png into the
directory (the latest multirun under outputs/multiruns when none is given) and prints the table with what
it is ranked by. Runs running now are listed as running; runs of different tasks get a table each.
With --curves-by KEY --along KEY [--panels KEY], also tradeoff_curves.png: how one swept
setting moves runs along the trade-off, e.g.

    python scripts/compare.py --curves-by style_loss --along style_weight_scale --panels content
"""

import argparse
import sys
from pathlib import Path

from nst_research.errors import one_line_errors
from nst_research.tracking.compare import latest_sweep, read_folder, tradeoff_curves, write_comparison


@one_line_errors
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", nargs="?", type=Path,
                        help="a multirun, a run, or a folder of runs (default: the latest multirun)")
    parser.add_argument("--curves-by", metavar="KEY", help="also tradeoff_curves.png: a line per value of this "
                        "swept key (e.g. style_loss) on the trade-off plane, through its runs in --along's order")
    parser.add_argument("--along", metavar="KEY", help="with --curves-by: the swept key that orders each line "
                        "(e.g. style_weight_scale)")
    parser.add_argument("--panels", metavar="KEY", help="with --curves-by: a panel per value of this swept key")
    args = parser.parse_args()
    if args.curves_by and not args.along:
        parser.error("--curves-by needs --along, the swept key that orders each line")
    directory = args.directory or latest_sweep()
    folder = read_folder(directory)
    print("\n".join(folder.notes()))
    markdown, written = write_comparison(folder)
    print(markdown)
    if args.curves_by:
        tradeoff_curves(folder.runs, args.curves_by, args.along, args.panels, directory / "tradeoff_curves.png")
        written.append(directory / "tradeoff_curves.png")
    print("wrote " + ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
