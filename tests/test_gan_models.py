"""GAN architectures: output shapes from every `gan=` config, the layer sizes the issue names, and one
Lightning training step of every architecture with every loss."""

import lightning.pytorch as pl
import pytest
import torch
from hydra.utils import instantiate
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nst_research.gan.losses import LOSSES, get_loss
from nst_research.gan.models import DCGAN64Discriminator, DCGAN64Generator
from nst_research.gan.module import GANModule

ARCHITECTURES = {  # gan= option -> extra overrides that keep the test small
    "fc": [], "fc_1024": [], "dcgan": [], "dcgan64": ["gan.image_size=32", "gan.width=8"],
}


def networks(compose_cfg, gan: str, *overrides: str) -> tuple[nn.Module, nn.Module]:
    cfg = compose_cfg(["task=gan", f"gan={gan}", *ARCHITECTURES[gan], *overrides])
    return instantiate(cfg.gan.generator), instantiate(cfg.gan.discriminator)


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
    assert [(c.out_channels, c.kernel_size, c.stride) for c in transposed] == [(64, (4, 4), (2, 2)), (1, (4, 4), (2, 2))]


def test_dcgan64_is_radford_et_al():
    """The PyTorch DCGAN tutorial's network (nz=100, ngf=ndf=64, RGB 64x64) has exactly these parameter counts."""
    torch.manual_seed(0)
    generator, discriminator = DCGAN64Generator(), DCGAN64Discriminator()
    assert sum(p.numel() for p in generator.parameters()) == 3_576_704
    assert sum(p.numel() for p in discriminator.parameters()) == 2_765_568
    conv = next(m for m in generator.modules() if isinstance(m, nn.ConvTranspose2d))
    assert conv.weight.std().item() == pytest.approx(0.02, rel=0.05)  # N(0, 0.02) init


@pytest.mark.filterwarnings("ignore:.*no `val_dataloader`.*")
@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("gan", sorted(ARCHITECTURES))
def test_one_training_step(compose_cfg, gan, loss, tmp_path):
    torch.manual_seed(0)
    cfg = compose_cfg(["task=gan", f"gan={gan}", *ARCHITECTURES[gan]])
    generator, discriminator = instantiate(cfg.gan.generator), instantiate(cfg.gan.discriminator)
    module = GANModule(generator, discriminator, get_loss(loss), instantiate(cfg.gan.optimizer.generator),
                       instantiate(cfg.gan.optimizer.discriminator), noise=cfg.gan.noise,
                       gradient_clip_val=1.0, sample_every=1, grid_size=4, output_dir=tmp_path)
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    size = generator.image_size
    reals = TensorDataset(torch.rand(4, 1, size, size) * 2 - 1, torch.zeros(4))
    trainer = pl.Trainer(accelerator="cpu", fast_dev_run=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module, train_dataloaders=DataLoader(reals, batch_size=4))
    assert (module.discriminator_steps, module.generator_steps) == (1, 1)
    changed = {name.split(".")[0] for name, p in module.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {"generator", "discriminator"}
    losses = module.final_losses()
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(losses)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert ("gradient_penalty" in losses) == (loss == "wgan_gp")
    assert (tmp_path / "samples" / "step_000001.png").is_file()
