"""The stabilisers, each one option, each shown to be applied: spectral normalisation bounds every weight layer
of the discriminator (gan.discriminator.spectral_norm), the moving average of the generator moves apart from
the raw one and is what the grids and the metrics use (gan.ema_decay), DiffAugment changes every image the
discriminator sees and passes gradients (gan.augment=diffaugment), and the R1 penalty is E ||grad D(real)||^2
(gan.losses.<name>.r1_weight)."""

import pytest
import torch
from test_gan_models import ARCHITECTURES, fit, make_module, networks
from torch import nn

import nst_research.gan.task as gan_task
from nst_research.errors import UserInputError
from nst_research.gan.augment import DiffAugment, cutout, translation
from nst_research.gan.losses import r1_penalty
from nst_research.gan.metric import LeNet
from nst_research.gan.task import make_augment

pytestmark = pytest.mark.filterwarnings("ignore:.*no `val_dataloader`.*")


def largest_singular_values(discriminator: nn.Module) -> list[float]:
    """sigma of each conv and linear weight as the network uses it, reshaped to (out, in * kernel) as Miyato et al."""
    return [torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2).item() for m in discriminator.modules()
            if isinstance(m, nn.Conv2d | nn.Linear)]


@pytest.mark.parametrize("gan", list(ARCHITECTURES))
def test_spectral_norm_bounds_every_weight_layer(compose_cfg, gan):
    generator, plain = networks(compose_cfg, gan)
    _, normalised = networks(compose_cfg, gan, "gan.discriminator.spectral_norm=true")
    images = generator(torch.randn(8, generator.noise_dim)).detach()
    for _ in range(30):  # one power iteration per training forward pass
        normalised(images)
    sigmas = largest_singular_values(normalised)
    assert len(sigmas) == len(largest_singular_values(plain)) >= 3
    assert all(s == pytest.approx(1.0, abs=0.05) for s in sigmas), sigmas
    assert not all(s == pytest.approx(1.0, abs=0.05) for s in largest_singular_values(plain))  # off: untouched


def test_ema_is_a_moving_average_of_the_generator(compose_cfg):
    module = make_module(compose_cfg(["task=gan", "gan=fc", "gan.ema_decay=0.9"]))
    assert module.ema_decay == 0.9 and module.sampler is module.generator_ema
    old = [p.clone() for p in module.generator_ema.parameters()]
    with torch.no_grad():
        for p in module.generator.parameters():
            p.add_(1.0)
    module.update_ema()
    for average, before, weight in zip(module.generator_ema.parameters(), old, module.generator.parameters()):
        assert torch.allclose(average, 0.9 * before + 0.1 * weight)
    assert not any(p.requires_grad for p in module.generator_ema.parameters())
    plain = make_module(compose_cfg(["task=gan", "gan=fc"]))  # off by default
    assert plain.generator_ema is None and plain.sampler is plain.generator


def test_ema_weights_differ_from_the_raw_ones_and_make_the_grids_and_the_metric(compose_cfg, tmp_path):
    module = make_module(compose_cfg(["task=gan", "gan=dcgan", "gan.ema_decay=0.5"]))
    fit(module, batches=3)
    raw, average = module.generator.state_dict(), module.generator_ema.state_dict()
    weights = [k for k in raw if k.endswith("weight")]
    assert all(not torch.equal(raw[k], average[k]) for k in weights)
    assert torch.equal(raw["net.2.running_mean"], average["net.2.running_mean"])  # batch-norm statistics copied

    module.generator_ema.eval()
    with torch.no_grad():
        expected = module.generator_ema(module.grid_noise)
    grid = module.samples()[:, 2:30, 2:30]  # the first sample of the grid (2 px padding)
    assert torch.allclose(grid[0], (expected[0, 0] + 1) / 2, atol=1e-5)

    scored = []

    class Recorder:
        def update(self, images):
            scored.append(images)

    module.metric, module.metric_noise = Recorder(), torch.Generator().manual_seed(module.metric_seed)
    module._trainer = type("T", (), {"is_global_zero": True})()
    with torch.no_grad():
        module.validation_step((torch.zeros(4, 1, 28, 28),), 0)
        noise = torch.rand((4, module.generator.noise_dim), generator=torch.Generator().manual_seed(
            module.metric_seed)) * 2 - 1
        assert torch.allclose(scored[0], module.generator_ema(noise))
        assert not torch.allclose(scored[0], module.generator.eval()(noise))
    checkpoint = module.state_dict()
    assert any(k.startswith("generator_ema.") for k in checkpoint)  # saved, and restored on resume
    fresh = make_module(compose_cfg(["task=gan", "gan=dcgan", "gan.ema_decay=0.5"]))
    fresh.load_state_dict(checkpoint)
    assert all(torch.equal(a, b) for a, b in zip(fresh.generator_ema.state_dict().values(), average.values()))


def test_diffaugment_changes_every_image_d_sees_and_keeps_gradients(compose_cfg):
    torch.manual_seed(0)
    images = (torch.rand(6, 3, 32, 32) * 2 - 1).requires_grad_(True)
    augmented = DiffAugment()(images)
    assert augmented.shape == images.shape and not torch.allclose(augmented, images)
    augmented.square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    for policy in (["color"], ["translation"], ["cutout"]):
        assert not torch.equal(DiffAugment(policy)(images), images), policy

    module = make_module(compose_cfg(["task=gan", "gan=fc", "gan.augment=diffaugment"]))
    assert isinstance(module.augment, DiffAugment)
    augmented, seen = [], []
    module.augment.register_forward_hook(lambda net, inputs, out: augmented.append(out))
    module.discriminator.register_forward_hook(lambda net, inputs, out: seen.append(inputs[0]))
    fit(module, batches=1)
    assert len(seen) == 3  # real and fake for D's step, fake for G's: each one the augmentation's output
    assert all(x is y for x, y in zip(seen, augmented, strict=True))


def test_translation_and_cutout_as_the_reference():
    torch.manual_seed(0)
    x = torch.arange(1, 65, dtype=torch.float).view(1, 1, 8, 8).repeat(16, 1, 1, 1)
    shifted = translation(x)
    for image in shifted:  # a shift of at most 1 px (1/8 of 8) each way: the content moves, the rest is 0
        values = image[image != 0]
        assert len(values) >= 49 and set(values.tolist()) <= set(range(1, 65))
    holes = (cutout(x) == 0).flatten(1).sum(1)
    assert holes.max() == 16 and holes.min() >= 4  # a 4x4 square, clipped at the border


def test_r1_penalty_is_the_squared_gradient_norm_on_reals():
    weight = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    real = torch.randn(5, 1, 2, 2)
    penalty = r1_penalty(lambda x: (x.flatten(1) * weight.flatten()).sum(1), real)
    assert penalty.item() == pytest.approx(30.0)  # ||w||^2 = 1 + 4 + 9 + 16


def test_r1_weight_adds_the_penalty_to_d_loss(compose_cfg):
    module = make_module(compose_cfg(["task=gan", "gan=fc", "gan.loss=bce", "gan.losses.bce.r1_weight=10"]))
    assert module.loss.r1_weight == 10
    fit(module, batches=1)
    assert module.final_losses()["r1_penalty"] > 0


@pytest.mark.parametrize("override, message", [
    ("gan.ema_decay=1.5", "gan.ema_decay=1.5 must be between 0 and 1"),
    ("gan.augment=flip", "gan.augment=flip is not an augmentation; choose one of: diffaugment"),
    ("gan.augment=diffaugment gan.augments.diffaugment.policy=[zoom]", r"policy \[.zoom.\]: choose from color"),
    ("gan.losses.bce.r1_weight=-1", "r1_weight=-1 must be a number >= 0"),
])
def test_bad_stabiliser_settings_are_clear_errors(compose_cfg, tmp_path, monkeypatch, override, message):
    monkeypatch.setattr(gan_task, "load_classifier", lambda cache_dir: (LeNet(), 0.99))  # not needed to refuse
    cfg = compose_cfg(["task=gan", "gan=fc", *override.split(), "logger=none"], output_dir=tmp_path / "run")
    with pytest.raises(UserInputError, match=message):
        gan_task.run(cfg)
    assert not (tmp_path / "run").exists()


def test_no_augmentation_by_default(compose_cfg):
    assert make_augment(compose_cfg(["task=gan", "gan=fc"]).gan) is None
