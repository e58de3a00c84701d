"""Feature networks: VGG topology, layer names, weight sources.

`VGGFeatures` is imported on first use, so that layer names can be checked without loading torch.
"""

from typing import Any

from nst_research.features.layers import layer_names

__all__ = ["VGGFeatures", "layer_names"]


def __getattr__(name: str) -> Any:
    if name == "VGGFeatures":
        from nst_research.features.vgg import VGGFeatures

        return VGGFeatures
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
