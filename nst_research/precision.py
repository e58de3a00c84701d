"""The number format a task computes in (`precision=32 | bf16 | fp16 | auto`), and whether the hardware does bf16
natively.

With bf16 (or fp16) the feature network and the loss terms' matrix products run under `torch.autocast` in
16 bits, while the image, its parameterization, the losses' sums and differences, the optimizer's state and
L-BFGS's line search stay in fp32 (a loss is fp32 before `backward`). fp16, for GPUs whose fast 16-bit format
it is (compute capability 7.x: V100, T4), has too little range for gradients, so its evaluations scale the
loss (`LossScaler`). `auto` picks bf16 where matrix products in bf16
are native: a CPU with AVX-512 BF16 or AMX (as oneDNN, which runs PyTorch's CPU convolutions, uses them) or an
NVIDIA GPU of compute capability 8.0 or later; elsewhere bf16 is emulated and slower than fp32, so `auto`
keeps fp32. `bf16_support(device)` is the probe, for any task to use: the training tasks (feed-forward, GAN)
use it for `trainer.precision=auto`, Lightning's mixed precision where it pays (`TrainingPrecision`).
"""

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from nst_research.errors import UserInputError

DTYPES = ("fp32", "bf16", "fp16", "auto")
CHOICES = {32: "fp32", "32": "fp32", "fp32": "fp32", "bf16": "bf16", 16: "fp16", "16": "fp16", "fp16": "fp16",
           "auto": "auto"}  # the option's value -> dtype
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
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
    """`dtype` ("fp32", "bf16", "fp16" or "auto") as the format to run on `device` ("fp32", "bf16" or "fp16"),
    and why. `auto` never picks fp16: where bf16 is not native, fp32 is the safe choice."""
    if dtype == "auto":
        native, why = bf16_support(device)
        return ("bf16" if native else "fp32"), f"auto: {why}"
    if dtype == "bf16":
        native, why = bf16_support(device)
        return "bf16", "requested" if native else f"requested; {why}"
    if dtype == "fp16" and device.type == "cpu":
        return "fp16", ("requested; fp16 is meant for GPUs without bf16 (V100, T4): a CPU emulates it, tens of times "
                        "slower than fp32")
    return dtype, "requested"


@dataclass(frozen=True)
class Precision:
    """How the objective computes: its number format (`dtype`: fp32, bf16, fp16, or auto before `resolve`) and the
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
            raise UserInputError(f"precision={precision} is not a choice: use precision=32, bf16, fp16 or auto")
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
        """The context the objective computes in: bf16 or fp16 autocast, or nothing (fp32, or what the caller set)."""
        if self.dtype == "auto":
            raise ValueError("resolve an auto precision for its device first")
        return nullcontext() if self.exact else torch.autocast(device_type, dtype=AUTOCAST_DTYPES[self.dtype])

    def loss_scaler(self) -> "LossScaler | None":
        """A fresh loss scaler for fp16's evaluations; None for the formats with fp32's range."""
        return LossScaler() if self.dtype == "fp16" else None

    def describe(self) -> str:
        """`bf16 + channels_last (auto: CPU has AVX-512 BF16)`: the console's line."""
        layout = " + channels_last" if self.channels_last else ""
        return f"{self.dtype}{layout} ({self.reason})"

    def record(self) -> dict[str, Any]:
        """What results.json keeps."""
        return {"dtype": self.dtype, "channels_last": self.channels_last, "reason": self.reason}


class LossScaler:
    """Dynamic loss scaling for fp16 (Micikevicius et al., 2018, "Mixed Precision Training"): the loss is
    multiplied by `scale` before `backward`, so that gradients too small for fp16 survive the backward pass, and
    the gradients are divided by it after. When they come out inf or NaN, the scale halves and the evaluation is
    repeated; after `growth_interval` evaluations in a row without overflow, it doubles.

    It works inside an evaluation (`backward`), not at the optimizer's step as `torch.amp.GradScaler` does, so
    that every optimizer, L-BFGS and its line search included, sees only unscaled, finite gradients. A loss that
    is itself not finite is returned as it is (the run has diverged), as are gradients still not finite at
    `min_scale`."""

    def __init__(self, scale: float = 2.0**16, growth_interval: int = 100, min_scale: float = 2.0**-24) -> None:
        self.scale, self.growth_interval, self.min_scale = scale, growth_interval, min_scale
        self.good_evaluations = 0

    def backward(self, evaluate: Callable[[], dict[str, Tensor]], backward: Callable[[Tensor], None],
                 parameters: Sequence[Tensor]) -> dict[str, Tensor]:
        """`evaluate()`'s losses, after `backward` of their scaled "total" has left the true gradients in
        `parameters`' `.grad`; evaluated again, at a lower scale, as often as the gradients overflow."""
        while True:
            losses = evaluate()
            backward(losses["total"] * self.scale)
            gradients = [p.grad for p in parameters if p.grad is not None]
            for gradient in gradients:
                gradient.div_(self.scale)
            overflow = not all(bool(torch.isfinite(gradient).all()) for gradient in gradients)
            if not overflow or not torch.isfinite(losses["total"]) or self.scale <= self.min_scale:
                break
            self.scale, self.good_evaluations = self.scale / 2, 0
            for p in parameters:
                p.grad = None
        if not overflow:
            self.good_evaluations += 1
            if self.good_evaluations == self.growth_interval:
                self.scale, self.good_evaluations = self.scale * 2, 0
        return losses


def accelerator_device(accelerator: str) -> torch.device:
    """The device a Lightning `accelerator` value trains on (`auto`: a CUDA GPU, else MPS, else the CPU)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    if accelerator == "mps" or (accelerator == "auto" and torch.backends.mps.is_available()):
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class TrainingPrecision:
    """Lightning's `trainer.precision` for a training task, with `auto` resolved: `bf16-mixed` (bf16 autocast,
    fp32 weights) where the device multiplies bf16 natively, `32-true` elsewhere; and why."""

    value: str
    reason: str = "requested"

    @classmethod
    def of(cls, trainer_node: Any) -> "TrainingPrecision":
        """The precision the `trainer` node asks for; `auto` looked up for the node's accelerator."""
        requested = str(trainer_node.get("precision", "32-true"))
        if requested != "auto":
            return cls(requested)
        native, why = bf16_support(accelerator_device(str(trainer_node.get("accelerator", "auto"))))
        return cls("bf16-mixed" if native else "32-true", f"auto: {why}")

    def record(self) -> dict[str, str]:
        """What results.json keeps."""
        return {"dtype": self.value, "reason": self.reason}
