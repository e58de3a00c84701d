"""`IterateAverage`: an exponential moving average of the image, used as the output.

Averaging the iterates smooths the high-frequency noise that Adam leaves in the pixels
(Polyak averaging; crowsonkb/style-transfer-pytorch's `--avg-decay`). The average is bias
corrected, as in Adam, so that it equals the image after one update rather than decay * 0.
"""

import torch
from torch import Tensor, nn

from nst_research.errors import UserInputError


def check_decay(decay: float | None) -> None:
    """`ema_decay` must be null (no averaging) or a number strictly between 0 and 1."""
    if decay is not None and not (isinstance(decay, int | float) and 0 < decay < 1):
        raise UserInputError(f"ema_decay={decay} must be a number between 0 and 1 (e.g. 0.99); or null for none")


class IterateAverage(nn.Module):
    """avg_t = decay * avg_{t-1} + (1 - decay) * x_t, read as avg_t / (1 - decay**t)."""

    def __init__(self, image: Tensor, decay: float):
        super().__init__()
        check_decay(decay)
        self.decay = float(decay)
        self.register_buffer("total", torch.zeros_like(image))
        self.register_buffer("weight", torch.zeros(()))
        self.update(image)

    @torch.no_grad()
    def update(self, image: Tensor) -> None:
        self.total.mul_(self.decay).add_(image.detach(), alpha=1 - self.decay)
        self.weight.mul_(self.decay).add_(1 - self.decay)

    def get(self) -> Tensor:
        return self.total / self.weight
