"""Johnson et al.'s (2016) image transformation network, with instance normalisation (Ulyanov et al. 2017).

Layout (channels for the paper's `width=32`): 9x9 conv 32, 3x3 stride-2 convs 64 and 128, five residual
blocks of 128, two upsampling stages (nearest-neighbour resize x2, then 3x3 conv: transposed convs leave
checkerboard artefacts, Odena et al. 2016), and a 9x9 conv to 3 channels. Every conv but the last is
followed by affine instance normalisation and ReLU; every conv pads by reflection, which avoids the dark
borders of zero padding.

Input and output are RGB in [0, 1]. The output goes through a sigmoid: the objective then only ever sees
images inside the valid range, so no clamp cuts gradients, and the untrained network starts from mid-grey
rather than from the saturated colours of an unbounded output. (Johnson et al.'s 150 * tanh targets
0..255 Caffe input; a [0, 1]-range tanh, (tanh(x) + 1) / 2, is sigmoid(2x), the same function.)

Any size and aspect: the image is padded (by replicating its edge) to a multiple of 4, at least 8 px, so
that the two stride-2 stages and the two upsamplings restore its size exactly, and the output is cropped
back to the input's size. The crop is a negative padding rather than a slice: `torch.export` then proves it in
range for every size, so an exported network keeps the padding dynamic (a slice's bounds it cannot prove, and
it would fix the size it was traced at).
"""

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class ConvLayer(nn.Sequential):
    """Reflection padding, then a conv that keeps the size (stride 1) or halves it (stride 2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(nn.ReflectionPad2d(kernel_size // 2),
                         nn.Conv2d(in_channels, out_channels, kernel_size, stride))


def conv_norm_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(ConvLayer(in_channels, out_channels, kernel_size, stride),
                         nn.InstanceNorm2d(out_channels, affine=True), nn.ReLU())


class ResidualBlock(nn.Module):
    """x + IN(conv(ReLU(IN(conv(x))))), as in Johnson et al.'s supplementary material (no ReLU after the sum)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_norm_relu(channels, channels, 3), ConvLayer(channels, channels, 3),
                                  nn.InstanceNorm2d(channels, affine=True))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Upsample(nn.Module):
    """Nearest-neighbour resize x2, then conv + instance norm + ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = conv_norm_relu(in_channels, out_channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class JohnsonNet(nn.Module):
    """RGB in [0, 1] of any size -> stylised RGB in [0, 1] of the same size.

    `width` is the first conv's channel count (32 in the paper); the downsampling stages have 2x and 4x
    as many, the residual blocks 4x. `blocks` residual blocks (5 in the paper).
    """

    def __init__(self, width: int = 32, blocks: int = 5) -> None:
        super().__init__()
        if width < 1 or blocks < 0:
            raise ValueError(f"JohnsonNet needs width >= 1 and blocks >= 0, not width={width}, blocks={blocks}")
        self.width, self.blocks = width, blocks
        self.multiple = 4  # two stride-2 stages
        self.min_side = 8  # the 9x9 conv's reflection padding (4 px) needs more than 4 px a side
        self.net = nn.Sequential(
            conv_norm_relu(3, width, 9),
            conv_norm_relu(width, 2 * width, 3, stride=2),
            conv_norm_relu(2 * width, 4 * width, 3, stride=2),
            *[ResidualBlock(4 * width) for _ in range(blocks)],
            Upsample(4 * width, 2 * width),
            Upsample(2 * width, width),
            ConvLayer(width, 3, 9),
        )

    def padding(self, size: int) -> int:
        """Pixels to add to a side of `size` px: up to a multiple of 4, and at least `min_side`."""
        padded = max(size, self.min_side)
        padded = (padded + self.multiple - 1) // self.multiple * self.multiple
        return padded - size

    def forward(self, image: Tensor) -> Tensor:
        height, width = image.shape[-2], image.shape[-1]
        pad_h, pad_w = self.padding(height), self.padding(width)
        top, left = pad_h // 2, pad_w // 2
        x = F.pad(image, [left, pad_w - left, top, pad_h - top], mode="replicate")
        x = torch.sigmoid(self.net(x))
        return F.pad(x, [-left, left - pad_w, -top, top - pad_h])
