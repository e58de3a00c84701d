"""The image transformation network: Johnson et al.'s layout, any input size, output in [0, 1]."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from nst_research.errors import UserInputError
from nst_research.feedforward.checkpoint import build_network
from nst_research.feedforward.network import JohnsonNet

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def convs(network: nn.Module) -> list[nn.Conv2d]:
    return [m for m in network.modules() if isinstance(m, nn.Conv2d)]


def test_config_builds_johnsons_layout():
    network = instantiate(OmegaConf.load(CONF_DIR / "network" / "johnson.yaml"))
    assert isinstance(network, JohnsonNet)
    layers = convs(network)
    # 9x9 conv 32, stride-2 convs 64 and 128, 5 residual blocks of two 128 convs, two upsampling convs, 9x9 to RGB
    assert [c.out_channels for c in layers] == [32, 64, 128] + [128] * 10 + [64, 32, 3]
    assert [c.kernel_size[0] for c in layers] == [9, 3, 3] + [3] * 10 + [3, 3, 9]
    assert [c.stride[0] for c in layers] == [1, 2, 2] + [1] * 10 + [1, 1, 1]
    assert all(c.padding == (0, 0) for c in layers)  # padding is by reflection, before each conv
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in network.modules()) == len(layers)
    assert not any(isinstance(m, nn.ConvTranspose2d | nn.BatchNorm2d) for m in network.modules())
    norms = [m for m in network.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == len(layers) - 1 and all(n.affine for n in norms)


def test_width_and_blocks_scale_the_network():
    network = JohnsonNet(width=8, blocks=2)
    assert [c.out_channels for c in convs(network)] == [8, 16, 32] + [32] * 4 + [16, 8, 3]


@pytest.mark.parametrize("size", [(1, 1), (3, 7), (37, 53), (64, 64), (5, 100), (66, 30)])
def test_output_has_the_input_size_and_range(size):
    torch.manual_seed(0)
    network = JohnsonNet(width=4, blocks=1)
    image = torch.rand(2, 3, *size)
    output = network(image)
    assert output.shape == image.shape
    assert output.min() >= 0 and output.max() <= 1


def test_output_depends_on_the_input_and_trains():
    torch.manual_seed(0)
    network = JohnsonNet(width=4, blocks=1)
    a, b = torch.rand(1, 3, 32, 48), torch.rand(1, 3, 32, 48)
    assert not torch.allclose(network(a), network(b))
    network(a).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in network.parameters())


def test_images_of_a_batch_are_stylised_independently():
    """Instance normalisation: an image's output does not depend on the rest of the batch (batch norm would)."""
    torch.manual_seed(0)
    network = JohnsonNet(width=4, blocks=1)
    batch = torch.rand(3, 3, 36, 28)
    assert torch.allclose(network(batch)[1:2], network(batch[1:2]), atol=1e-6)


def test_network_target_must_be_a_module_class():
    assert isinstance(build_network({"_target_": "nst_research.feedforward.network.JohnsonNet", "width": 4}),
                      JohnsonNet)
    for target in ("os.system", "builtins.dict", "no.such.Module", None):
        with pytest.raises(UserInputError, match="not a torch.nn.Module class"):
            build_network({"_target_": target})
