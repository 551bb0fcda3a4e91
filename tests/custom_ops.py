"""A user-defined candidate op, referenced by import path from a config in the tests."""

from torch import nn

from darts_lightning.spaces.ops import ReLUConvBN


def conv_1x1(channels: int, stride: int, affine: bool) -> nn.Module:
    return ReLUConvBN(channels, channels, 1, stride, 0, affine=affine)


class _Broken(nn.Module):
    def forward(self, x):
        raise RuntimeError("no kernel for this input")


def broken(channels: int, stride: int, affine: bool) -> nn.Module:
    """An op that cannot run (its forward raises), for the errors of the cost models."""
    return _Broken()
