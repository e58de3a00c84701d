"""Parts built from `_target_` config nodes, with a user's configuration mistake as one clear line."""

from collections.abc import Iterator, Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import _locate, instantiate
from lightning.pytorch.plugins.precision import HalfPrecision
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from nst_research.errors import UserInputError


def build(node: Mapping[str, Any], **kwargs: Any) -> Any:
    """`instantiate(node, **kwargs)`, with a missing value or the constructor's own ValueError (a
    UserInputError among them) raised as a UserInputError instead of Hydra's wrapped traceback."""
    try:
        return instantiate(node, **kwargs)
    except MissingMandatoryValue as error:
        raise UserInputError(f"{error.full_key} has no value; set it, e.g. {error.full_key}=...") from None
    except InstantiationException as error:  # Hydra wraps the constructor's own error
        if isinstance(error.__cause__, ValueError):
            raise UserInputError(str(error.__cause__)) from None
        raise


def make_trainer(node: Mapping[str, Any], **kwargs: Any) -> Any:
    """The Lightning Trainer of the `trainer` node; a device this machine lacks (trainer=gpu or ddp without a
    GPU) or a setting Lightning refuses (a `trainer.precision` it does not know, a package it needs for one)
    is a UserInputError, raised before the run writes anything."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, MisconfigurationException):
            raise UserInputError(f"trainer: {error.__cause__}; choose a trainer this machine supports, e.g. "
                                 "trainer=cpu (or trainer=ddp_cpu for several processes)") from None
        if isinstance(error.__cause__, ValueError | ModuleNotFoundError):
            raise UserInputError(f"trainer: {error.__cause__}") from None
        raise


def check_targets(cfg: DictConfig) -> None:
    """Import the class or function of every `_target_` node in `cfg` before the run starts: one that cannot
    be imported (a module of one's own left off PYTHONPATH, a misspelt name) is a UserInputError naming it,
    instead of Hydra's error when the part is built."""
    for key, target in targets(OmegaConf.to_container(cfg, resolve=False)):
        if "${" in target:
            try:
                target = OmegaConf.select(cfg, f"{key}._target_" if key else "_target_")
            except OmegaConfBaseException:
                continue  # building the part reports it
        try:
            _locate(target)
        except ImportError as error:
            where, cause = key or "_target_", error.__cause__ or error
            module, _, name = target.rpartition(".")
            if isinstance(cause, ModuleNotFoundError) and cause.name == target:  # the module has no such name
                raise UserInputError(f"{where}: cannot import {target}: {module} has no {name}; "
                                     "check the name") from None
            raise UserInputError(f"{where}: cannot import {target} ({cause}); is it on PYTHONPATH?") from None


def targets(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key of the node, its `_target_`) for every `_target_` node in a config container."""
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            yield key, node["_target_"]
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for name, child in items:
        yield from targets(child, f"{key}.{name}" if key else str(name))


def check_training_precision(trainer: Any) -> None:
    """Networks train with fp32 (or fp64) weights: Lightning's `bf16-true` and `16-true` would hold the weights,
    Adam's moments and the generator's moving average in 16 bits, whose rounding drops the small updates.
    Mixed precision (`bf16-mixed`, `16-mixed`) computes in 16 bits and keeps the weights in fp32."""
    if isinstance(trainer.precision_plugin, HalfPrecision):
        raise UserInputError(f"trainer.precision={trainer.precision_plugin.precision} keeps the weights themselves in "
                             "16 bits; use trainer.precision=bf16-mixed (or 16-mixed on a GPU), which computes in "
                             "16 bits and keeps fp32 weights")
