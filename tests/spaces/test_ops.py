"""Tests of darts_lightning.spaces.ops: the candidate ops, their definitions and the op registry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from darts_lightning.spaces import ops
from darts_lightning.spaces.ops import (
    DARTS_OPS,
    NB201_OPS,
    DilConv,
    FactorizedReduce,
    Identity,
    ReLUConvBN,
    SepConv,
    Zero,
    build_op,
    get_op,
    list_ops,
    register_op,
    resolve_op_names,
)

ALL_BUILTIN_OPS = sorted(set(DARTS_OPS) | set(NB201_OPS) | {"sep_conv_7x7", "noise"})
C = 8


# --------------------------------------------------------------------------- helpers / fixtures


@pytest.fixture
def clean_registry(monkeypatch):
    """Restore the op registry after a test that registers ops."""
    monkeypatch.setattr(ops.OPS, "_factories", dict(ops.OPS._factories))
    return ops.OPS


def my_conv(c, stride, affine):
    """An op factory referenced by import path in the tests below."""
    return ReLUConvBN(c, c, 3, stride, 1, affine=affine)


def my_zero(c, stride, affine):
    return Zero(stride)


my_zero.is_zero = True

NOT_CALLABLE = 42


def _x(size: int = 8) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(2, C, size, size)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", ALL_BUILTIN_OPS)
def test_op_output_shape(name, stride, affine):
    op = build_op(name, C, stride, affine)
    out = op(_x())
    assert out.shape == (2, C, 8 // stride, 8 // stride)


@pytest.mark.parametrize("stride", [1, 2])
def test_none_outputs_zeros(stride):
    x = _x() + 1.0  # make sure the input is not zero
    out = build_op("none", C, stride, True)(x)
    assert out.shape == (2, C, 8 // stride, 8 // stride)
    assert torch.count_nonzero(out) == 0


def test_registered_ops_include_darts_and_nb201():
    names = list_ops()
    assert names == sorted(names)
    for name in ALL_BUILTIN_OPS:
        assert name in names


# --------------------------------------------------------------------------- standard definitions


def _check_sep_conv(op, kernel, stride, affine):
    assert isinstance(op, SepConv)
    types = [type(m) for m in op]
    assert types == [nn.ReLU, nn.Conv2d, nn.Conv2d, nn.BatchNorm2d] * 2
    dw1, pw1, bn1, dw2, pw2, bn2 = op[1], op[2], op[3], op[5], op[6], op[7]
    for dw, s in ((dw1, stride), (dw2, 1)):  # only the first depthwise conv is strided
        assert dw.groups == C and dw.in_channels == C and dw.out_channels == C
        assert dw.kernel_size == (kernel, kernel)
        assert dw.stride == (s, s)
        assert dw.padding == (kernel // 2, kernel // 2)
        assert dw.bias is None
    for pw in (pw1, pw2):
        assert pw.kernel_size == (1, 1) and pw.groups == 1 and pw.bias is None
    for bn in (bn1, bn2):
        assert bn.affine is affine
    assert not op[0].inplace and not op[4].inplace


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name,kernel", [("sep_conv_3x3", 3), ("sep_conv_5x5", 5), ("sep_conv_7x7", 7)])
def test_sep_conv_definition(name, kernel, stride, affine):
    _check_sep_conv(build_op(name, C, stride, affine), kernel, stride, affine)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name,kernel", [("dil_conv_3x3", 3), ("dil_conv_5x5", 5)])
def test_dil_conv_definition(name, kernel, stride, affine):
    op = build_op(name, C, stride, affine)
    assert isinstance(op, DilConv)
    assert [type(m) for m in op] == [nn.ReLU, nn.Conv2d, nn.Conv2d, nn.BatchNorm2d]
    dw, pw, bn = op[1], op[2], op[3]
    assert dw.groups == C
    assert dw.kernel_size == (kernel, kernel)
    assert dw.dilation == (2, 2)
    assert dw.stride == (stride, stride)
    # "same" padding for a dilated kernel: dilation * (kernel - 1) / 2
    assert dw.padding == (kernel - 1, kernel - 1)
    assert pw.kernel_size == (1, 1) and pw.groups == 1
    assert bn.affine is affine


@pytest.mark.parametrize("affine", [True, False])
def test_skip_connect(affine):
    x = _x()
    same = build_op("skip_connect", C, 1, affine)
    assert isinstance(same, Identity)
    assert torch.equal(same(x), x)
    reduce = build_op("skip_connect", C, 2, affine)
    assert isinstance(reduce, FactorizedReduce)
    assert reduce.conv_1.stride == (2, 2) and reduce.conv_2.stride == (2, 2)
    assert reduce.conv_1.out_channels + reduce.conv_2.out_channels == C
    assert reduce.bn.affine is affine


def test_factorized_reduce_needs_even_channels():
    with pytest.raises(ValueError, match="even"):
        FactorizedReduce(4, 5)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name,cls", [("max_pool_3x3", nn.MaxPool2d), ("avg_pool_3x3", nn.AvgPool2d)])
def test_pools_are_parameter_free(name, cls, stride):
    op = build_op(name, C, stride, True)
    assert isinstance(op, cls)
    assert list(op.parameters()) == []
    assert get_op(name).bn_in_search


def test_avg_pool_excludes_padding():
    # count_include_pad=False: pooling a constant image gives the constant everywhere, borders included
    out = build_op("avg_pool_3x3", C, 1, True)(torch.ones(1, C, 8, 8))
    assert torch.allclose(out, torch.ones_like(out))


@pytest.mark.parametrize("name,kernel", [("nor_conv_1x1", 1), ("nor_conv_3x3", 3)])
def test_nb201_conv_definition(name, kernel):
    op = build_op(name, C, 2, False)
    assert isinstance(op, ReLUConvBN)
    assert [type(m) for m in op] == [nn.ReLU, nn.Conv2d, nn.BatchNorm2d]
    assert op[1].kernel_size == (kernel, kernel) and op[1].stride == (2, 2) and op[1].groups == 1
    assert op[2].affine is False


def test_none_is_zero_op():
    assert get_op("none").is_zero
    assert not any(get_op(n).is_zero for n in ALL_BUILTIN_OPS if n != "none")


def test_build_op_rejects_bad_stride():
    with pytest.raises(ValueError, match="stride"):
        build_op("sep_conv_3x3", C, 3, True)


# --------------------------------------------------------------------------- registry


def test_unknown_op_lists_every_registered_name():
    with pytest.raises(ValueError) as info:
        build_op("bogus", C, 1, True)
    message = str(info.value)
    assert "bogus" in message
    for name in list_ops():
        assert name in message
    assert "sep_conv_3x3" in message and "max_pool_3x3" in message


def test_register_op_as_decorator(clean_registry):
    @register_op("test_conv_dec")
    def factory(c, stride, affine):
        return ReLUConvBN(c, c, 3, stride, 1, affine=affine)

    assert callable(factory)  # the decorator returns the factory itself
    assert "test_conv_dec" in list_ops()
    op = build_op("test_conv_dec", C, 2, True)
    assert isinstance(op, ReLUConvBN)
    assert op(_x()).shape == (2, C, 4, 4)


def test_register_op_as_function(clean_registry):
    register_op("test_conv_fn", lambda c, stride, affine: nn.Conv2d(c, c, 1, stride=stride), bn_in_search=True)
    assert "test_conv_fn" in list_ops()
    assert get_op("test_conv_fn").bn_in_search
    op = build_op("test_conv_fn", C, 1, True)
    assert isinstance(op, nn.Conv2d) and op.stride == (1, 1)


def test_register_op_twice_needs_overwrite(clean_registry):
    register_op("test_dup", lambda c, s, a: nn.Identity())
    with pytest.raises(ValueError, match="already registered"):
        register_op("test_dup", lambda c, s, a: nn.Identity())
    with pytest.raises(ValueError, match="already registered"):
        register_op("sep_conv_3x3", lambda c, s, a: nn.Identity())
    register_op("test_dup", lambda c, s, a: nn.Tanh(), overwrite=True)
    assert isinstance(build_op("test_dup", C, 1, True), nn.Tanh)


def test_register_op_rejects_non_callable(clean_registry):
    with pytest.raises(TypeError):
        register_op("test_not_callable", 5)
    assert "test_not_callable" not in list_ops()


def test_registry_fixture_cleans_up():
    # runs after the tests above in file order: nothing they registered is left behind
    assert not any(name.startswith("test_") for name in list_ops())
    assert "sep_conv_3x3" in list_ops()


# --------------------------------------------------------------------------- import paths


@pytest.mark.parametrize("sep", [":", "."])
def test_op_by_import_path(sep):
    path = f"{__name__}{sep}my_conv"
    op = build_op(path, C, 2, False)
    assert isinstance(op, ReLUConvBN)
    assert op[2].affine is False
    assert op(_x()).shape == (2, C, 4, 4)
    assert path not in list_ops()  # an import path is not registered as a side effect


def test_import_path_honours_is_zero_attribute():
    assert get_op(f"{__name__}:my_zero").is_zero
    assert not get_op(f"{__name__}:my_conv").is_zero


@pytest.mark.parametrize(
    "path",
    ["no_such_module_for_darts_tests:factory", f"{__name__}:no_such_factory", "no_such_pkg_xyz.factory"],
)
def test_bad_import_path(path):
    with pytest.raises(ValueError) as info:
        build_op(path, C, 1, True)
    assert path in str(info.value)


def test_import_path_to_non_callable():
    path = f"{__name__}:NOT_CALLABLE"
    with pytest.raises(ValueError, match="non-callable") as info:
        build_op(path, C, 1, True)
    assert path in str(info.value)


# --------------------------------------------------------------------------- resolve_op_names


def test_resolve_op_names_accepts_valid_lists():
    assert resolve_op_names(list(DARTS_OPS)) == DARTS_OPS
    assert resolve_op_names(iter(NB201_OPS)) == NB201_OPS


def test_resolve_op_names_rejects_empty():
    with pytest.raises(ValueError, match="empty") as info:
        resolve_op_names([])
    assert "sep_conv_3x3" in str(info.value)  # tells the user what to choose from


def test_resolve_op_names_rejects_duplicates():
    with pytest.raises(ValueError, match="repeated") as info:
        resolve_op_names(["none", "sep_conv_3x3", "skip_connect", "sep_conv_3x3"])
    message = str(info.value)
    assert "sep_conv_3x3" in message
    assert "skip_connect" not in message and "none" not in message


def test_resolve_op_names_rejects_unknown():
    with pytest.raises(ValueError, match="valid ops") as info:
        resolve_op_names(["sep_conv_3x3", "conv_9x9"])
    assert "conv_9x9" in str(info.value)
