"""A user-defined candidate op, referenced by import path from a config in the tests."""

from torch import nn

from darts_lightning.spaces.ops import ReLUConvBN


def conv_1x1(channels: int, stride: int, affine: bool) -> nn.Module:
    return ReLUConvBN(channels, channels, 1, stride, 0, affine=affine)
