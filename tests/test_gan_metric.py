"""The GAN quality metrics: a cached digit classifier (held-out accuracy >= 95 %) and, in its feature space,
the Frechet distance (about 0 for identical sets and growing as images are corrupted) and precision, recall,
density and coverage (high for real against real, recall and coverage low for a generator that copies one digit)."""

import pytest
import torch
from torchmetrics.image.fid import FrechetInceptionDistance

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


def frechet(model, real, other):
    return M.SampleMetrics(model).compare(real, other)["frechet_distance"]


def test_distance_is_zero_for_identical_sets_and_grows_with_corruption(classifier, digits):
    model, _ = classifier
    real = digits[:500]
    assert frechet(model, real, real.clone()) == pytest.approx(0.0, abs=1e-2)
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(real.shape, generator=generator)
    distances = [frechet(model, real, (real + level * noise).clamp(-1, 1)) for level in (0.1, 0.3, 0.6, 1.0)]
    assert distances == sorted(distances) and distances[0] > 0.1, distances
    floor = frechet(model, real, digits[500:])  # other real digits
    assert floor < distances[-1] / 10


def test_frechet_distance_matches_torchmetrics(classifier, digits):
    model, _ = classifier
    reference = FrechetInceptionDistance(feature=M.DigitFeatures(model))
    reference.update(digits[:500], real=True)
    reference.update(digits[500:], real=False)
    assert frechet(model, digits[:500], digits[500:]) == pytest.approx(reference.compute().item(), rel=1e-4)


def test_real_against_real_scores_high(classifier, digits):
    scores = M.SampleMetrics(classifier[0]).compare(digits[:500], digits[500:])
    assert min(scores["precision"], scores["recall"], scores["coverage"]) > 0.6, scores
    assert 0.6 < scores["density"] < 1.4, scores  # about 1 when the fakes are distributed as the reals


def test_a_generator_copying_one_digit_has_no_variety(classifier, digits):
    """Mode collapse: every sample the same real digit. Its samples look real (precision 1) but cover almost
    none of the real digits (recall 0, coverage about k/n); the Frechet distance is far above the floor."""
    metrics = M.SampleMetrics(classifier[0])
    collapsed = digits[600:601].repeat(500, 1, 1, 1)
    scores = metrics.compare(digits[:500], collapsed)
    assert scores["precision"] == 1.0 and scores["recall"] == 0.0, scores
    assert scores["coverage"] < 0.05, scores
    assert scores["frechet_distance"] > 10 * metrics.compare(digits[:500], digits[500:])["frechet_distance"]


def test_knn_metrics_by_hand():
    """Reals on a line at 0, 1, 2, 3 (k=1: every radius 1); fakes at 0.5 and 10."""
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [10.0], [10.5]])
    scores = M.precision_recall_density_coverage(real, fake, k=1)
    assert scores["precision"] == pytest.approx(1 / 3)  # 0.5 is within 1 of 0 and 1; 10 and 10.5 of nothing
    assert scores["density"] == pytest.approx(2 / 3)  # 0.5 lies in two real balls: (2 + 0 + 0) / 3
    assert scores["coverage"] == pytest.approx(2 / 4)  # the balls of 0 and 1 hold a fake
    assert M.knn_radii(fake, 1).tolist() == [9.5, 0.5, 0.5]
    assert scores["recall"] == 1.0  # the isolated fake's ball (radius 9.5) holds every real: what coverage avoids


def test_a_metric_needs_more_samples_than_k(classifier, digits):
    with pytest.raises(ValueError, match="more than k=5"):
        M.SampleMetrics(classifier[0], k=5).compare(digits[:100], digits[:5])


def test_features_of_colour_and_larger_images(classifier):
    features = M.DigitFeatures(classifier[0])
    grey = torch.rand(2, 1, 28, 28) * 2 - 1
    assert features(grey).shape == (2, M.LeNet.num_features)
    colour = grey.repeat(1, 3, 1, 1)
    assert torch.allclose(features(colour), features(grey), atol=1e-5)
    assert features(torch.rand(2, 3, 64, 64)).shape == (2, M.LeNet.num_features)
    features.train()
    assert not features.net.training  # frozen
