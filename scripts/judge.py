"""Judge any image or run on the fixed yardstick: `python scripts/judge.py <image or run dir>... --content IMG
--style IMG` (--help)."""

import sys

from nst_research.judge.command import main

if __name__ == "__main__":
    sys.exit(main())
