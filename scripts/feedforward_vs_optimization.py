"""A trained feed-forward network against optimisation: `python scripts/feedforward_vs_optimization.py <run dir>`
(--help)."""

import sys

from nst_research.feedforward.comparison import main

if __name__ == "__main__":
    sys.exit(main())
