"""Parts built from `_target_` config nodes, with a user's configuration mistake as one clear line."""

from collections.abc import Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf.errors import MissingMandatoryValue

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
    GPU) is a UserInputError, raised before the run writes anything."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, MisconfigurationException):
            raise UserInputError(f"trainer: {error.__cause__}; choose a trainer this machine supports, e.g. "
                                 "trainer=cpu (or trainer=ddp_cpu for several processes)") from None
        raise
