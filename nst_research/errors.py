"""User-facing input errors: the one exception type, and the checks shared by every config value."""

import math


class UserInputError(ValueError):
    """Bad input (a path, a layer name, a weight): the message says what is wrong and how to fix it."""


def check_nonnegative(**values: float) -> None:
    """Each value must be a finite number >= 0; the error names the config key."""
    for name, value in values.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise UserInputError(f"{name}={value} must be a finite number >= 0")


class RunDiverged(RuntimeError):
    """The loss became NaN or infinite at `step`: the run stops and keeps its last finite image."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step

    def __reduce__(self) -> tuple:  # pickled with its step (e.g. from a benchmark's worker process)
        return type(self), (str(self), self.step)
