"""Feature networks: VGG topology, layer names, weight sources."""

from nst_research.features.layers import layer_names
from nst_research.features.vgg import VGGFeatures

__all__ = ["VGGFeatures", "layer_names"]
