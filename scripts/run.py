"""Run an experiment: `python scripts/run.py [overrides]` (see README, or `--help`)."""

from nst_research.cli import main

if __name__ == "__main__":
    main()
