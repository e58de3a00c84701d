"""The number format a task computes in (`precision=32 | bf16 | auto`), and whether the hardware does bf16
natively.

With bf16 the feature network and the loss terms' matrix products run under `torch.autocast` in bfloat16,
while the image, its parameterization, the losses' sums and differences, the optimizer's state and L-BFGS's
line search stay in fp32 (a loss is fp32 before `backward`). `auto` picks bf16 where matrix products in bf16
are native: a CPU with AVX-512 BF16 or AMX (as oneDNN, which runs PyTorch's CPU convolutions, uses them) or an
NVIDIA GPU of compute capability 8.0 or later; elsewhere bf16 is emulated and slower than fp32, so `auto`
keeps fp32. `bf16_support(device)` is the probe, for any task to use.
"""

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

import torch

from nst_research.errors import UserInputError

DTYPES = ("fp32", "bf16", "auto")
CHOICES = {32: "fp32", "32": "fp32", "fp32": "fp32", "bf16": "bf16", "auto": "auto"}  # the option's value -> dtype
CPU_BF16_FLAGS = (("amx_bf16", "AMX BF16"), ("avx512_bf16", "AVX-512 BF16"))  # torch.cpu.get_capabilities() keys


def bf16_support(device: torch.device) -> tuple[bool, str]:
    """Whether `device` multiplies bf16 matrices natively, and what says so (a phrase for the console)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{name} has native bf16"
        return False, f"{name} has no native bf16 (compute capability below 8.0)"
    if device.type == "cpu":
        capabilities = torch.cpu.get_capabilities()
        onednn = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        for flag, name in CPU_BF16_FLAGS:
            if capabilities.get(flag) and onednn:
                return True, f"CPU has {name}"
        return False, "CPU has neither AVX-512 BF16 nor AMX BF16, so bf16 would be emulated (slower than fp32)"
    return False, f"no native bf16 known for {device.type}"


def resolve(dtype: str, device: torch.device) -> tuple[str, str]:
    """`dtype` ("fp32", "bf16" or "auto") as the format to run on `device` ("fp32" or "bf16"), and why."""
    if dtype == "auto":
        native, why = bf16_support(device)
        return ("bf16" if native else "fp32"), f"auto: {why}"
    if dtype == "bf16":
        native, why = bf16_support(device)
        return "bf16", "requested" if native else f"requested; {why}"
    return dtype, "requested"


@dataclass(frozen=True)
class Precision:
    """How the objective computes: its number format (`dtype`: fp32, bf16, or auto before `resolve`) and the
    feature network's memory layout (`channels_last`: NHWC, which some convolution kernels prefer), with the
    reason they were chosen."""

    dtype: str = "fp32"
    channels_last: bool = False
    reason: str = "requested"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; one of {DTYPES}")

    @classmethod
    def choice(cls, precision: Any = 32, channels_last: Any = False) -> "Precision":
        """The precision the options `precision=` and `channels_last=` ask for; a bad value is a UserInputError."""
        if not isinstance(precision, int | str) or isinstance(precision, bool) or precision not in CHOICES:
            raise UserInputError(f"precision={precision} is not a choice: use precision=32, bf16 or auto")
        if not isinstance(channels_last, bool):
            raise UserInputError(f"channels_last={channels_last} must be true or false")
        return cls(CHOICES[precision], channels_last)

    def resolve(self, device: torch.device) -> "Precision":
        """This precision as it runs on `device`: `auto` becomes fp32 or bf16, with the reason."""
        dtype, reason = resolve(self.dtype, device)
        return replace(self, dtype=dtype, reason=reason)

    @property
    def exact(self) -> bool:
        """fp32 throughout: nothing to autocast."""
        return self.dtype == "fp32"

    def autocast(self, device_type: str) -> AbstractContextManager:
        """The context the objective computes in: bf16 autocast, or nothing (fp32, or what the caller set)."""
        if self.dtype == "auto":
            raise ValueError("resolve an auto precision for its device first")
        return nullcontext() if self.exact else torch.autocast(device_type, dtype=torch.bfloat16)

    def describe(self) -> str:
        """`bf16 + channels_last (auto: CPU has AVX-512 BF16)`: the console's line."""
        layout = " + channels_last" if self.channels_last else ""
        return f"{self.dtype}{layout} ({self.reason})"

    def record(self) -> dict[str, Any]:
        """What results.json keeps."""
        return {"dtype": self.dtype, "channels_last": self.channels_last, "reason": self.reason}
