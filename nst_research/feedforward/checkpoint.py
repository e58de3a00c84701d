"""What a feed-forward checkpoint holds, and how the network is rebuilt from it alone.

A feed-forward checkpoint is a Lightning `.ckpt` (a `torch.save`d dict) with:
- `hyper_parameters["network"]`: the network's `_target_` node as a plain dict, e.g.
  `{"_target_": "nst_research.feedforward.network.JohnsonNet", "width": 32, "blocks": 5}`;
- `state_dict`: the network's weights under the prefix `network.` (other prefixes are ignored).
`FeedForwardModule` writes both. A run directory's checkpoint is `checkpoints/best.ckpt` (the best by
validation loss), else `checkpoints/last.ckpt`, else `checkpoints/interrupted.ckpt` (a run stopped before its
first validation has only that one). The file is read with `weights_only=True` (tensors and plain
containers only) and the `_target_` must name an `nn.Module` class, so a checkpoint cannot run code.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from torch import nn

from nst_research.checkpoint_files import read_checkpoint
from nst_research.errors import UserInputError

NETWORK_KEY = "network"
PREFIX = "network."
INTERRUPTED = "interrupted.ckpt"
CHECKPOINT_NAMES = ("best.ckpt", "last.ckpt", INTERRUPTED)
FIX = "give a feed-forward run directory or its .ckpt file"


def build_network(config: Mapping[str, Any]) -> nn.Module:
    """Build a network from its `_target_` node; the target must be an `nn.Module` class (checked before
    anything is called). Arguments the class refuses (a ValueError or TypeError) are a UserInputError."""
    target = config.get("_target_")
    try:
        cls = get_class(target) if isinstance(target, str) else None
    except (ImportError, ValueError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UserInputError(f"network _target_ {target!r} is not a torch.nn.Module class; give the import path "
                             "of a network class, e.g. nst_research.feedforward.network.JohnsonNet")
    try:
        return instantiate(dict(config))
    except InstantiationException as error:  # the class's own complaint about its arguments, e.g. width=0
        if isinstance(error.__cause__, ValueError | TypeError):
            raise UserInputError(f"network: {error.__cause__}; give the options its class takes "
                                 "(see conf/network/)") from None
        raise


def checkpoint_file(path: Path, fix: str = FIX) -> Path:
    """A .ckpt file as given, or a run directory's checkpoints/best.ckpt, else last.ckpt (the feed-forward and
    GAN tasks keep both), else interrupted.ckpt (written on Ctrl-C or SIGTERM: a run stopped before its first
    validation has no other); `fix` ends the message when there is none."""
    if path.is_dir():
        for name in CHECKPOINT_NAMES:
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
        raise UserInputError(f"{path} has no checkpoints/best.ckpt, last.ckpt or {INTERRUPTED}; {fix}")
    if not path.is_file():
        raise UserInputError(f"checkpoint {path} does not exist; {fix}")
    return path


def load_network(path: Path) -> nn.Module:
    """The trained network of a checkpoint or run directory, in eval mode on the CPU."""
    path = checkpoint_file(Path(path).expanduser())
    try:
        checkpoint = read_checkpoint(path)
    except UserInputError as error:
        raise UserInputError(f"{error}; {FIX}") from None
    hyper_parameters = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    config = hyper_parameters.get(NETWORK_KEY) if isinstance(hyper_parameters, dict) else None
    if not isinstance(config, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserInputError(f"{path} is not a feed-forward checkpoint (no network in its hyper_parameters: "
                             f"a checkpoint of another task?); {FIX}")
    network = build_network(config)
    weights = {key.removeprefix(PREFIX): value for key, value in checkpoint["state_dict"].items()
               if key.startswith(PREFIX)}
    try:
        network.load_state_dict(weights)
    except RuntimeError as error:
        raise UserInputError(f"{path}: the weights do not fit network {config} "
                             f"({str(error).splitlines()[0]}); {FIX}") from None
    return network.eval().requires_grad_(False)
