"""Conditional GANs (gan.conditional=true): every generator makes the class asked for (an embedding for the
fully connected ones, conditional batch norm for the convolutional ones), the discriminator uses the class
through a projection head or an ACGAN classifier, grids put one class per row, the metrics add the
classifier's accuracy on the classes asked for, and unlabelled data is refused in one line."""

import json

import lightning.pytorch as pl
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from test_gan_models import ARCHITECTURES, fit, make_module
from torch.utils.data import DataLoader, TensorDataset

import nst_research.gan.task as gan_task
from nst_research.data.mnist5k import load_mnist5k
from nst_research.errors import UserInputError
from nst_research.gan.metric import LeNet, SampleMetrics, load_classifier
from nst_research.gan.models import ConditionalBatchNorm

pytestmark = pytest.mark.filterwarnings("ignore:.*no `val_dataloader`.*")


def conditional(compose_cfg, gan: str, head: str = "projection", *overrides: str):
    cfg = compose_cfg(["task=gan", f"gan={gan}", *ARCHITECTURES[gan], f"gan.conditional_head={head}", *overrides])
    generator = instantiate(cfg.gan.generator, num_classes=10)
    discriminator = instantiate(cfg.gan.discriminator, num_classes=10, conditional_head=head)
    return cfg, generator, discriminator


@pytest.mark.parametrize("gan", list(ARCHITECTURES))
def test_every_architecture_makes_and_judges_the_class_asked_for(compose_cfg, gan):
    _, generator, discriminator = conditional(compose_cfg, gan)
    generator.eval()
    for norm in (m for m in generator.modules() if isinstance(m, ConditionalBatchNorm)):
        torch.nn.init.normal_(norm.scale.weight, 1.0, 0.5)  # as training would: each class its own scale (1 at first)
    z = torch.randn(4, generator.noise_dim)
    zeros, ones = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    images = generator(z, zeros)
    assert images.shape[0] == 4 and not torch.allclose(images, generator(z, ones))  # the class changes the image
    assert (any(isinstance(m, ConditionalBatchNorm) for m in generator.modules())) == (gan.startswith("dcgan"))
    scores = discriminator(images, zeros)
    assert scores.shape == (4,) and not torch.allclose(scores, discriminator(images, ones))  # the projection term
    _, _, acgan = conditional(compose_cfg, gan, "acgan")
    score, logits = acgan(images, zeros)
    assert score.shape == (4,) and logits.shape == (4, 10)


@pytest.mark.parametrize("gan, head", [("fc", "projection"), ("dcgan", "acgan")])
def test_conditional_training_step(compose_cfg, tmp_path, gan, head):
    cfg, generator, discriminator = conditional(compose_cfg, gan, head)
    module = instantiate(cfg.module, sample_every=1, grid_size=20, output_dir=tmp_path)(
        generator, discriminator, gan_task.make_loss(cfg.gan), instantiate(cfg.gan.optimizer.generator),
        instantiate(cfg.gan.optimizer.discriminator))
    assert module.num_classes == 10 and module.grid_labels.tolist() == [c for c in range(10) for _ in range(2)]
    size = module.generator.image_size
    reals = TensorDataset(torch.rand(8, 1, size, size) * 2 - 1, torch.randint(10, (8,)))
    pl.Trainer(accelerator="cpu", fast_dev_run=1, logger=False, enable_progress_bar=False,
               enable_model_summary=False).fit(module, train_dataloaders=DataLoader(reals, 4))
    losses = module.final_losses()
    assert ("class_loss" in losses) == (head == "acgan") and all(torch.isfinite(torch.tensor(list(losses.values()))))
    grid = Image.open(tmp_path / "samples" / "step_000001.png")
    assert grid.size == (2 * size + 3 * 2, 10 * size + 11 * 2)  # two samples of each class, one class per row


def test_unconditional_module_is_unchanged(compose_cfg):
    module = make_module(compose_cfg(["task=gan", "gan=fc"]))
    assert module.num_classes is None and module.grid_labels is None
    fit(module, batches=1)


def test_class_accuracy_of_real_digits(tmp_path_factory):
    classifier, _ = load_classifier(tmp_path_factory.getbasetemp() / "classifier_cache")
    images, labels = load_mnist5k(seed=5)
    metrics = SampleMetrics(classifier)
    metrics.set_reference(images[:200])
    metrics.update(images[200:600], labels[200:600])
    assert metrics.compute()["class_accuracy"] > 0.9
    metrics.update(images[200:600], (labels[200:600] + 1) % 10)  # asked for the wrong class
    assert metrics.compute()["class_accuracy"] < 0.1
    metrics.update(images[200:600])
    assert not any(name.startswith("class_accuracy") for name in metrics.compute())  # unconditional samples


def test_class_accuracy_per_class_finds_the_class_a_generator_cannot_make(tmp_path_factory):
    """A "generator" that, asked for a 7, makes a 1: the overall accuracy stays high, the 7's falls to about 0."""
    classifier, _ = load_classifier(tmp_path_factory.getbasetemp() / "classifier_cache")
    images, labels = load_mnist5k(seed=5)
    images, labels = images[200:1200], labels[200:1200]
    ones = images[labels == 1]
    made = images.clone()
    made[labels == 7] = ones[torch.arange(int((labels == 7).sum())) % len(ones)]
    metrics = SampleMetrics(classifier)
    metrics.set_reference(images[:200])
    metrics.update(made, labels)
    scores = metrics.compute()
    per_class = {name: value for name, value in scores.items() if name.startswith("class_accuracy/")}
    assert sorted(per_class) == [f"class_accuracy/{c}" for c in range(10)]
    assert per_class["class_accuracy/7"] < 0.1 < 0.9 < min(v for n, v in per_class.items() if n != "class_accuracy/7")
    assert scores["class_accuracy"] > 0.8  # one class missing in ten hides in the overall number


def folder_of(tmp_path, layout: dict[str, int]):
    root = tmp_path / "images"
    for sub, count in layout.items():
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("L", (28, 28), 40 * i).save(root / sub / f"{i}.png")
    return root


def test_image_folder_classes_are_its_subfolders(compose_cfg, tmp_path):
    root = folder_of(tmp_path, {"cats": 3, "dogs": 2})
    cfg = compose_cfg(["task=gan", "gan=fc", "data=image_folder", f"data.root={root}", "data.channels=1",
                       "data.batch_size=2", "metric.samples=2"])
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    assert datamodule.num_classes == 2 and [label for _, label in datamodule.dataset] == [0, 0, 0, 1, 1]


@pytest.mark.parametrize("layout", [{".": 6}, {"only": 6}])
def test_unlabelled_data_with_conditional_is_one_error_line(compose_cfg, tmp_path, monkeypatch, layout):
    monkeypatch.setattr(gan_task, "load_classifier", lambda cache_dir: (LeNet(), 0.99))
    root = folder_of(tmp_path, layout)
    cfg = compose_cfg(["task=gan", "gan=fc", "gan.conditional=true", "data=image_folder", f"data.root={root}",
                       "data.channels=1", "data.batch_size=2", "metric.samples=3", "metric.k=1", "logger=none"],
                      output_dir=tmp_path / "run")
    with pytest.raises(UserInputError, match="^gan.conditional=true needs labelled data, but data=image_folder "
                                             "has no classes; .*one subfolder per class$") as error:
        gan_task.run(cfg)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


def test_bad_head_is_a_clear_error(compose_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(gan_task, "load_classifier", lambda cache_dir: (LeNet(), 0.99))
    cfg = compose_cfg(["task=gan", "gan=fc", "gan.conditional=true", "gan.conditional_head=aux", "logger=none"],
                      output_dir=tmp_path / "run")
    with pytest.raises(UserInputError, match="gan.conditional_head=aux: choose projection or acgan"):
        gan_task.run(cfg)


def test_conditional_run_end_to_end(run_cli, tmp_path):
    """`python scripts/run.py task=gan gan.conditional=true` (tiny): one digit class per grid row, and the
    classifier's accuracy on the classes asked for in results.json."""
    run_dir = tmp_path / "run"
    result = run_cli("task=gan", "gan=fc", "gan.conditional=true", "trainer.max_epochs=1",
                     "+trainer.limit_train_batches=3", "metric.samples=60", "grid_size=20", "logger=csv",
                     f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["conditional"] == "projection"
    for key in ("initial", "final"):
        assert 0 <= results["sample_metrics"][key]["class_accuracy"] <= 1, results["sample_metrics"]
        assert all(0 <= results["sample_metrics"][key][f"class_accuracy/{c}"] <= 1 for c in range(10))
    assert Image.open(run_dir / "samples.png").size == (2 * 28 + 3 * 2, 10 * 28 + 11 * 2)
