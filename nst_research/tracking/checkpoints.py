"""Lightning checkpoints that stay inside their run folder, wherever the folder is moved.

`RunModelCheckpoint` is Lightning's `ModelCheckpoint` whose saved state (the best and last checkpoint's paths)
follows the run folder: a resumed run that was copied or moved keeps its best score and writes only into its
own `checkpoints/`.
"""

from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


def moved(path: str, old: str, new: str) -> str:
    """`path` inside folder `old`, as the same file inside `new` (other paths as they are)."""
    if not path or not old or old == new:
        return path
    inside = Path(path).is_relative_to(old)
    return str(Path(new) / Path(path).relative_to(old)) if inside else path


class RunModelCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` that reads a checkpoint written in another folder (its run folder copied or moved)
    as if written in its own: Lightning would otherwise forget the best score and keep the old folder's path."""

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
