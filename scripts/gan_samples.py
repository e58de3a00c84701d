"""Samples from a trained GAN: `python scripts/gan_samples.py <run dir> [--interpolate]` (--help)."""

import sys

from nst_research.gan.samples import main

if __name__ == "__main__":
    sys.exit(main())
