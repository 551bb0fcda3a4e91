"""Candidate operations and the op registry.

Every op is built by a factory ``factory(channels, stride, affine) -> nn.Module`` that maps a tensor
of ``channels`` channels to one of ``channels`` channels, halving the spatial size when ``stride`` is
2. ``affine`` is ``False`` during the search (as in DARTS, where the architecture weights α take the
role of the batch-norm scale) and ``True`` in the network a genotype describes.

The eight DARTS primitives (Liu et al., ICLR 2019, section 3.1) and the NAS-Bench-201 convolutions
(Dong & Yang, ICLR 2020) are registered here. Researchers add their own with :func:`register_op`, or
name a factory by import path (``"my_package.my_module:my_factory"``) wherever an op name is accepted.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from darts_lightning.utils.registry import Registry

OpFactory = Callable[[int, int, bool], nn.Module]

__all__ = [
    "OpFactory",
    "OpSpec",
    "OPS",
    "register_op",
    "list_ops",
    "get_op",
    "build_op",
    "resolve_op_names",
    "DARTS_OPS",
    "NB201_OPS",
    "Zero",
    "Identity",
    "ReLUConvBN",
    "SepConv",
    "DilConv",
    "FactorizedReduce",
    "NoiseOp",
]


@dataclass(frozen=True)
class OpSpec:
    """A registered op: its factory and how the mixed edge treats it.

    ``is_zero``: the op outputs zeros (``none``); a mixed edge never calls it, it only takes softmax mass.
    ``bn_in_search``: a parameter-free op whose output gets a non-affine batch norm inside a mixed edge,
    as DARTS does for pooling so that its scale is comparable to the convolutions'.
    """

    name: str
    factory: OpFactory
    is_zero: bool = False
    bn_in_search: bool = False

    def __call__(self, channels: int, stride: int, affine: bool) -> nn.Module:
        return self.factory(channels, stride, affine)


#: The registered ops (each an :class:`OpSpec`, called like its factory).
OPS: Registry[nn.Module] = Registry(
    "op", hint="or an import path 'package.module:factory', or register one with darts_lightning.register_op"
)


def register_op(
    name: str,
    factory: OpFactory | None = None,
    *,
    is_zero: bool = False,
    bn_in_search: bool = False,
    overwrite: bool = False,
):
    """Register a candidate op under ``name``; usable as a decorator.

    >>> @register_op("conv_3x3")
    ... def conv_3x3(channels, stride, affine):
    ...     return ReLUConvBN(channels, channels, 3, stride, 1, affine=affine)
    """

    def _register(fn: OpFactory) -> OpFactory:
        if not callable(fn):
            raise TypeError(f"op {name!r}: the factory must be callable, got {type(fn).__name__}")
        OPS.register(name, OpSpec(name, fn, is_zero=is_zero, bn_in_search=bn_in_search), overwrite=overwrite)
        return fn

    return _register(factory) if factory is not None else _register


def list_ops() -> list[str]:
    """Names of all registered ops, sorted."""
    return OPS.names()


def import_path_ops(names: Iterable[str]) -> list[str]:
    """The names among ``names`` that :func:`get_op` would resolve by importing a module (unregistered names
    with a ``:`` or a ``.``), sorted: a file that names them runs code when it is built."""
    return sorted({name for name in names if name not in OPS and (":" in name or "." in name)})


def _import_factory(path: str) -> OpFactory:
    if ":" in path:
        module_name, attr = path.split(":", 1)
    else:
        module_name, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(
            f"op {path!r} looks like an import path but could not be imported ({error}); "
            "write it as 'package.module:factory' with a factory(channels, stride, affine) -> nn.Module"
        ) from error


def get_op(name: str) -> OpSpec:
    """The :class:`OpSpec` of a registered name or of an import path ``package.module:factory``."""
    if name not in OPS and (":" in name or "." in name):
        factory = _import_factory(name)
        if not callable(factory):
            raise ValueError(f"op {name!r} resolves to a non-callable {type(factory).__name__}")
        return OpSpec(
            name,
            factory,
            is_zero=bool(getattr(factory, "is_zero", False)),
            bn_in_search=bool(getattr(factory, "bn_in_search", False)),
        )
    spec = OPS.get(name)  # an unknown name: the error lists the valid ones
    assert isinstance(spec, OpSpec), f"op {name!r} is registered as {spec!r}, not as an OpSpec"
    return spec


def build_op(name: str, channels: int, stride: int, affine: bool) -> nn.Module:
    """Build the op ``name`` for ``channels`` channels at ``stride`` (1 or 2)."""
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    return get_op(name).factory(channels, stride, affine)


def resolve_op_names(names: Iterable[str]) -> tuple[str, ...]:
    """Validate a list of candidate op names; raises a clear error for unknown or repeated names."""
    names = tuple(names)
    if not names:
        raise ValueError(f"the candidate op list is empty; choose from: {', '.join(list_ops())}")
    for name in names:
        get_op(name)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"candidate ops are repeated: {', '.join(repeated)}")
    return names


# --------------------------------------------------------------------------- building blocks


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class Identity(nn.Identity):
    """The stride-1 ``skip_connect``; a distinct class so drop-path can recognise it."""


class ReLUConvBN(nn.Sequential):
    """ReLU → conv → batch norm, the DARTS preprocessing and NAS-Bench-201 convolution."""

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU → dilated depthwise conv → pointwise conv → batch norm."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool = True,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Separable conv as in DARTS: (ReLU → depthwise → pointwise → BN) twice, the first strided."""

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride, padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_in, 1, bias=False),
            nn.BatchNorm2d(c_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, 1, padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class FactorizedReduce(nn.Module):
    """Halve the spatial size with two offset stride-2 1×1 convs whose outputs are concatenated."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class NoiseOp(nn.Module):
    """The ``noise`` op of R-DARTS's space S4 (Zela et al., ICLR 2020, sec. 3): Gaussian noise of the output's
    shape, drawn afresh on every call, in training and evaluation alike, from torch's random generator on
    the input's device (``torch.manual_seed`` makes it reproducible).

    As the released op does (automl/RobustDARTS, commit 3dec3fe, src/operations.py, lines 7 and 26-39:
    ``NoiseOp(stride, 0., 1.)``), the noise is standard normal by default, independent of the input's
    values (neither its mean nor its scale), and a stride-2 edge takes the shape of ``x[:, :, ::2, ::2]``.
    No gradient flows to the input; the op has no parameters.
    """

    def __init__(self, stride: int, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.stride, self.mean, self.std = stride, float(mean), float(std)

    def forward(self, x: Tensor) -> Tensor:
        shape = x[:, :, :: self.stride, :: self.stride].shape
        return torch.empty(shape, device=x.device, dtype=x.dtype).normal_(self.mean, self.std)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, mean={self.mean}, std={self.std}"


# --------------------------------------------------------------------------- the DARTS primitives


def _skip_connect(c: int, stride: int, affine: bool) -> nn.Module:
    return Identity() if stride == 1 else FactorizedReduce(c, c, affine=affine)


register_op("none", lambda c, stride, affine: Zero(stride), is_zero=True)
register_op(
    "avg_pool_3x3",
    lambda c, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    bn_in_search=True,
)
register_op("max_pool_3x3", lambda c, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1), bn_in_search=True)
register_op("skip_connect", _skip_connect)
register_op("sep_conv_3x3", lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine=affine))
register_op("sep_conv_5x5", lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine=affine))
register_op("sep_conv_7x7", lambda c, stride, affine: SepConv(c, c, 7, stride, 3, affine=affine))
register_op("dil_conv_3x3", lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine=affine))
register_op("dil_conv_5x5", lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine=affine))

# NAS-Bench-201 convolutions: ReLU → conv → BN.
register_op("nor_conv_1x1", lambda c, stride, affine: ReLUConvBN(c, c, 1, stride, 0, affine=affine))
register_op("nor_conv_3x3", lambda c, stride, affine: ReLUConvBN(c, c, 3, stride, 1, affine=affine))

# R-DARTS's S4 op: noise in place of the skip connection.
register_op("noise", lambda c, stride, affine: NoiseOp(stride), is_zero=False)

DARTS_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
"""The DARTS search space's candidate ops, in the order of the DARTS code (``PRIMITIVES``)."""

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""The NAS-Bench-201 candidate ops, in the benchmark's order."""
