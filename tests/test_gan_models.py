"""GAN architectures: output shapes from every `gan=` config, the layer sizes of the original architectures, the
shared settings every option inherits, and Lightning training steps of every architecture with every
loss: the generator step leaves the discriminator's gradients alone, and values are logged only on the
steps Lightning logs."""

import csv
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nst_research.gan.models import DCGAN64Discriminator, DCGAN64Generator
from nst_research.gan.module import GANModule
from nst_research.gan.task import make_augment, make_loss

GAN_DIR = Path(__file__).resolve().parents[1] / "conf" / "gan"
ARCHITECTURES = {  # gan= option -> extra overrides that keep the test small
    "fc": [], "fc_1024": [], "dcgan": [], "dcgan64": ["gan.image_size=32", "gan.width=8"],
}
LOSSES = ["bce", "lsgan", "wgan_gp", "hinge"]


def networks(compose_cfg, gan: str, *overrides: str) -> tuple[nn.Module, nn.Module]:
    cfg = compose_cfg(["task=gan", f"gan={gan}", *ARCHITECTURES[gan], *overrides])
    return instantiate(cfg.gan.generator), instantiate(cfg.gan.discriminator)


def make_module(cfg, **options) -> GANModule:
    """The task's module (the `module` node, with `options` overridden) for the config's networks, loss and
    augmentation."""
    torch.manual_seed(0)
    return instantiate(cfg.module, **options)(
        instantiate(cfg.gan.generator), instantiate(cfg.gan.discriminator), make_loss(cfg.gan),
        instantiate(cfg.gan.optimizer.generator), instantiate(cfg.gan.optimizer.discriminator),
        augment=make_augment(cfg.gan))


def fit(module: GANModule, batches: int, **trainer_options) -> None:
    """Train on `batches` batches of 4 random images of the generator's shape."""
    size = module.generator.image_size
    reals = TensorDataset(torch.rand(4 * batches, 1, size, size) * 2 - 1, torch.zeros(4 * batches))
    trainer_options = {"fast_dev_run": batches, "logger": False, **trainer_options}
    trainer = pl.Trainer(accelerator="cpu", enable_progress_bar=False, enable_model_summary=False, **trainer_options)
    trainer.fit(module, train_dataloaders=DataLoader(reals, batch_size=4))


def test_every_architecture_is_tested():
    assert {path.stem for path in GAN_DIR.glob("*.yaml") if not path.stem.startswith("_")} == set(ARCHITECTURES)


def test_options_inherit_the_shared_settings(compose_cfg):
    """conf/gan/_common.yaml gives every option its loss, noise, steps, clipping and Adam; an option
    changes what it sets (dcgan64: normal noise, lr 2e-4), and gan.lr / gan.betas reach both optimizers."""
    for gan in ARCHITECTURES:
        settings = compose_cfg(["task=gan", f"gan={gan}"]).gan
        assert (settings.loss, settings.d_steps, settings.gradient_clip_val, settings.gradient_clip_algorithm,
                list(settings.betas)) == ("bce", 1, None, "norm", [0.5, 0.999]), gan
        assert (settings.noise, settings.lr) == (("normal", 2e-4) if gan == "dcgan64" else ("uniform", 1e-3)), gan
        assert settings.name == gan
    cfg = compose_cfg(["task=gan", "gan=fc", "gan.lr=3e-4", "gan.betas=[0.0,0.9]"])
    for network in ("generator", "discriminator"):
        optimizer = instantiate(cfg.gan.optimizer[network])([nn.Parameter(torch.zeros(1))])
        assert isinstance(optimizer, torch.optim.Adam)
        assert (optimizer.defaults["lr"], optimizer.defaults["betas"]) == (3e-4, (0.0, 0.9))


def test_module_options_come_from_the_config(compose_cfg):
    cfg = compose_cfg(["task=gan", "gan=fc", "gan.d_steps=3", "gan.noise=normal", "gan.gradient_clip_val=0.5",
                       "gan.gradient_clip_algorithm=value", "sample_every=7", "grid_size=9", "seed=4"])
    module = make_module(cfg)
    assert (module.d_steps, module.noise, module.gradient_clip_val, module.gradient_clip_algorithm,
            module.sample_every) == (3, "normal", 0.5, "value", 7)
    assert module.grid_noise.shape == (9, 96)
    assert torch.equal(make_module(cfg).grid_noise, module.grid_noise)  # fixed by the seed
    assert not torch.equal(make_module(compose_cfg(["task=gan", "gan=fc", "seed=5"])).grid_noise[:9], module.grid_noise)


def linear_widths(module: nn.Module) -> list[int]:
    layers = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return [layers[0].in_features, *(m.out_features for m in layers)]


@pytest.mark.parametrize("gan, size", [("fc", 28), ("fc_1024", 28), ("dcgan", 28), ("dcgan64", 32)])
def test_output_shapes(compose_cfg, gan, size):
    generator, discriminator = networks(compose_cfg, gan)
    z = torch.randn(3, generator.noise_dim)
    images = generator(z)
    assert images.shape == (3, 1, size, size)
    assert images.min() >= -1 and images.max() <= 1  # Tanh output, the data's range
    assert discriminator(images).shape == (3,)
    assert (generator.channels, generator.image_size) == (1, size)


def test_dcgan64_at_64_px_in_colour(compose_cfg):
    generator, discriminator = networks(compose_cfg, "dcgan64", "gan.image_size=64", "data=cifar10")
    images = generator(torch.randn(2, 100))
    assert images.shape == (2, 3, 64, 64)
    assert discriminator(images).shape == (2,)


def test_fully_connected_layer_sizes(compose_cfg):
    generator, discriminator = networks(compose_cfg, "fc")
    assert generator.noise_dim == 96
    assert linear_widths(generator) == [96, 128, 256, 512, 784]
    assert linear_widths(discriminator) == [784, 400, 200, 100, 1]
    assert {m.negative_slope for m in discriminator.modules() if isinstance(m, nn.LeakyReLU)} == {0.05}
    generator, discriminator = networks(compose_cfg, "fc_1024")
    assert linear_widths(generator) == [96, 1024, 1024, 784]
    assert linear_widths(discriminator) == [784, 256, 256, 1]
    assert {m.negative_slope for m in discriminator.modules() if isinstance(m, nn.LeakyReLU)} == {0.01}


def test_dcgan_layers(compose_cfg):
    generator, discriminator = networks(compose_cfg, "dcgan")
    convs = [m for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(32, (5, 5)), (64, (5, 5))]
    assert linear_widths(discriminator) == [1024, 1024, 1]
    assert linear_widths(generator) == [96, 1024, 7 * 7 * 128]
    transposed = [m for m in generator.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in transposed] == [(64, (4, 4), (2, 2)),
                                                                               (1, (4, 4), (2, 2))]


def test_dcgan64_is_radford_et_al():
    """The PyTorch DCGAN tutorial's network (nz=100, ngf=ndf=64, RGB 64x64) has exactly these parameter counts."""
    torch.manual_seed(0)
    generator, discriminator = DCGAN64Generator(), DCGAN64Discriminator()
    assert sum(p.numel() for p in generator.parameters()) == 3_576_704
    assert sum(p.numel() for p in discriminator.parameters()) == 2_765_568
    conv = next(m for m in generator.modules() if isinstance(m, nn.ConvTranspose2d))
    assert conv.weight.std().item() == pytest.approx(0.02, rel=0.05)  # N(0, 0.02) init


NODE_ONLY_LOSS = ["+gan.losses.hinge_gp._target_=nst_research.gan.losses.HingeLoss",
                  "+gan.losses.hinge_gp.gradient_penalty_weight=1", "gan.loss=hinge_gp"]


@pytest.mark.filterwarnings("ignore:.*no `val_dataloader`.*")
@pytest.mark.parametrize("gan, loss", [(gan, loss) for gan in ARCHITECTURES for loss in LOSSES] + [("fc", "hinge_gp")])
def test_one_training_step(compose_cfg, gan, loss, tmp_path):
    """hinge_gp: a loss defined by config nodes alone (the hinge loss with a gradient penalty)."""
    overrides = NODE_ONLY_LOSS if loss == "hinge_gp" else [f"gan.loss={loss}"]
    cfg = compose_cfg(["task=gan", f"gan={gan}", *ARCHITECTURES[gan], *overrides, "gan.gradient_clip_val=1.0"])
    module = make_module(cfg, sample_every=1, grid_size=4, output_dir=tmp_path)
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    fit(module, batches=1)
    assert (module.discriminator_steps, module.generator_steps) == (1, 1)
    changed = {name.split(".")[0] for name, p in module.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {"generator", "discriminator"}
    losses = module.final_losses()
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(losses)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert ("gradient_penalty" in losses) == (loss in ("wgan_gp", "hinge_gp"))
    assert (tmp_path / "samples" / "step_000001.png").is_file()


@pytest.mark.filterwarnings("ignore:.*no `val_dataloader`.*")
def test_generator_step_leaves_the_discriminator_gradients_alone(compose_cfg, monkeypatch):
    """G's loss gives D's weights no gradient (D's stay those of its own step), and a batch that is not a
    generator step (d_steps=2) builds no graph through G."""
    module = make_module(compose_cfg(["task=gan", "gan=fc", "gan.d_steps=2"]))
    gradients = []  # after each optimizer step: every parameter's gradient
    step = GANModule.step

    def recording_step(self, optimizer, loss):
        step(self, optimizer, loss)
        gradients.append({name: None if p.grad is None else p.grad.clone() for name, p in self.named_parameters()})

    monkeypatch.setattr(GANModule, "step", recording_step)
    with_graph = []
    module.generator.register_forward_hook(lambda net, inputs, images: with_graph.append(images.requires_grad))
    fit(module, batches=2)
    assert with_graph == [False, True]
    assert len(gradients) == 3  # D, D, then G
    after_d, after_g = gradients[1], gradients[2]
    d_names = [name for name in after_d if name.startswith("discriminator.")]
    assert d_names and all(after_d[name] is not None for name in d_names)
    assert all(torch.equal(after_g[name], after_d[name]) for name in d_names)
    assert all(after_g[name] is not None for name in after_g if name.startswith("generator."))
    assert all(p.requires_grad for p in module.discriminator.parameters())  # unfrozen afterwards


@pytest.mark.filterwarnings("ignore:.*no `val_dataloader`.*")
def test_values_reach_lightning_only_on_logged_steps(compose_cfg, tmp_path, monkeypatch):
    module = make_module(compose_cfg(["task=gan", "gan=fc"]))
    handed = []
    log_dict = GANModule.log_dict
    monkeypatch.setattr(GANModule, "log_dict", lambda self, values, **kwargs: (
        handed.append((self.discriminator_steps, sorted(values), kwargs.get("sync_dist"))),
        log_dict(self, values, **kwargs)))
    fit(module, batches=5, fast_dev_run=False, max_epochs=1, limit_train_batches=5, log_every_n_steps=2,
        logger=CSVLogger(tmp_path, name="csv", version=""), enable_checkpointing=False)
    keys = ["train/d_fake", "train/d_loss", "train/d_real", "train/g_loss"]
    assert handed == [(2, ["step", *keys], True), (4, ["step", *keys], True)]  # the mean over DDP processes
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    assert [int(row["step"]) for row in rows if row.get("train/d_loss")] == [2, 4]  # the x-axis: generator steps
    assert set(module.final_losses()) == {key.removeprefix("train/") for key in keys}  # the last batch's
