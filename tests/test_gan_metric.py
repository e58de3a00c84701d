"""The GAN quality metric: a cached digit classifier (held-out accuracy >= 95 %) and the Frechet distance
in its feature space, about 0 for identical sets and growing as images are corrupted."""

import pytest
import torch

import nst_research.gan.metric as M
from nst_research.data.mnist5k import load_mnist5k


@pytest.fixture(scope="module")
def classifier_cache(tmp_path_factory):
    """One cache per test session (shared with test_gan_run), so the classifier is trained once."""
    return tmp_path_factory.getbasetemp() / "classifier_cache"


@pytest.fixture(scope="module")
def classifier(classifier_cache):
    model, accuracy = M.load_classifier(classifier_cache)
    return model, accuracy


@pytest.fixture(scope="module")
def digits():
    return load_mnist5k(seed=3)[0][:1000]


def test_classifier_is_accurate_and_cached(classifier, classifier_cache, monkeypatch):
    model, accuracy = classifier
    assert accuracy >= M.MIN_ACCURACY
    assert (classifier_cache / M.CLASSIFIER_FILE).is_file()

    def no_training(**kwargs):
        raise AssertionError("the cached classifier should have been loaded")

    monkeypatch.setattr(M, "train_classifier", no_training)
    again, cached_accuracy = M.load_classifier(classifier_cache)
    assert cached_accuracy == accuracy
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_unreadable_cache_is_retrained(tmp_path, monkeypatch):
    (tmp_path / M.CLASSIFIER_FILE).write_bytes(b"truncated")
    calls = []
    monkeypatch.setattr(M, "train_classifier", lambda: calls.append(1) or (M.LeNet(), 0.99))
    rng = torch.random.get_rng_state()
    assert M.load_classifier(tmp_path)[1] == 0.99 and calls == [1]
    assert torch.equal(torch.random.get_rng_state(), rng)  # a run is the same whether or not it trained the classifier
    assert M.load_classifier(tmp_path)[1] == 0.99 and calls == [1]  # now cached


def test_inaccurate_classifier_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(M, "train_classifier", lambda: (M.LeNet(), 0.5))
    with pytest.raises(RuntimeError, match="below 0.95"):
        M.load_classifier(tmp_path)
    assert not (tmp_path / M.CLASSIFIER_FILE).exists()


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_RESEARCH_CACHE", str(tmp_path))
    assert M.default_cache_dir() == tmp_path


def test_distance_is_zero_for_identical_sets_and_grows_with_corruption(classifier, digits):
    model, _ = classifier
    real = digits[:500]
    assert M.frechet_distance(model, real, real.clone()) == pytest.approx(0.0, abs=1e-2)
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(real.shape, generator=generator)
    distances = [M.frechet_distance(model, real, (real + level * noise).clamp(-1, 1)) for level in (0.1, 0.3, 0.6, 1.0)]
    assert distances == sorted(distances) and distances[0] > 0.1, distances
    floor = M.frechet_distance(model, real, digits[500:])  # other real digits
    assert floor < distances[-1] / 10


def test_features_of_colour_and_larger_images(classifier):
    features = M.DigitFeatures(classifier[0])
    grey = torch.rand(2, 1, 28, 28) * 2 - 1
    assert features(grey).shape == (2, M.LeNet.num_features)
    colour = grey.repeat(1, 3, 1, 1)
    assert torch.allclose(features(colour), features(grey), atol=1e-5)
    assert features(torch.rand(2, 3, 64, 64)).shape == (2, M.LeNet.num_features)
    features.train()
    assert not features.net.training  # frozen
