"""Checkpoints that stay whole and inside their run folder, wherever the folder is moved.

`AtomicCheckpointIO` writes each Lightning checkpoint atomically in its own folder; `RunModelCheckpoint` is
Lightning's `ModelCheckpoint` whose saved state (the best and last checkpoint's paths) follows the run folder, so
a resumed run that was copied or moved keeps its best score and writes only into its own `checkpoints/`.
"""

import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from nst_research.atomic import write_atomic

PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


def moved(path: str, old: str, new: str) -> str:
    """`path` inside folder `old`, as the same file inside `new` (other paths as they are)."""
    if not path or not old or old == new:
        return path
    inside = Path(path).is_relative_to(old)
    return str(Path(new) / Path(path).relative_to(old)) if inside else path


class RunModelCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` that reads a checkpoint written in another folder (its run folder copied or moved)
    as if written in its own: Lightning would otherwise forget the best score and keep the old folder's path. A
    resume finds its own checkpoints there: Lightning's warning that the folder is not empty is not passed on."""

    def setup(self, *args: Any, **kwargs: Any) -> None:
        with warnings.catch_warnings():  # a resumed run writes into its own checkpoints/ by design
            warnings.filterwarnings("ignore", "Checkpoint directory .* exists and is not empty")
            super().setup(*args, **kwargs)

    @property
    def state_key(self) -> str:
        """Lightning's own key, so that checkpoints written by a plain `ModelCheckpoint` restore this one."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old, new = str(state_dict.get("dirpath") or ""), str(self.dirpath)
        state = {**state_dict, "dirpath": self.dirpath,
                 **{key: moved(state_dict[key], old, new) for key in PATH_KEYS if key in state_dict}}
        if "best_k_models" in state_dict:
            state["best_k_models"] = {moved(path, old, new): score
                                      for path, score in state_dict["best_k_models"].items()}
        super().load_state_dict(state)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing each checkpoint atomically inside its own folder (`write_atomic`):
    a full disk or a crash leaves the previous checkpoint whole, never a truncated one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        write_atomic(Path(path), lambda f: torch.save(checkpoint, f))

