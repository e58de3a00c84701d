"""Stylise images with a trained feed-forward network: `python scripts/stylize.py <run dir> <images...>` (--help)."""

import sys

from nst_research.feedforward.stylize import main

if __name__ == "__main__":
    sys.exit(main())
