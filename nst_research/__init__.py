"""nst-research: experiment tracking for neural style transfer and GANs."""

__version__ = "0.1.0"
