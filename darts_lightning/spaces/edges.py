"""Edges of a cell: a *mixed* edge (all candidate ops, weighted by the architecture) for the supernet,
and a *fixed* edge (one op) for the network a genotype describes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from darts_lightning.spaces.mixing import Relaxation, channel_shuffle
from darts_lightning.spaces.ops import FactorizedReduce, Identity, Zero, build_op, get_op

__all__ = ["MixedEdge", "FixedEdge", "drop_path"]


class MixedEdge(nn.Module):
    """All candidate ops of one edge, combined by a shared :class:`Relaxation`.

    ``ops`` holds the ops that compute something; ``op_indices[i]`` is the column of α that ``ops[i]``
    answers to. Zero ops (``none``) have a column of α but no module and are never called.

    Ops that begin with a ReLU (the separable and dilated convolutions) share one ReLU of the edge input
    instead of each computing and storing their own: the same result, with fewer activations kept for
    the backward pass. Ops that end with a non-affine batch norm (every op but ``skip_connect`` and
    ``none`` in the DARTS space) fold their mixing weight into that batch norm as its scale when the
    weight needs a gradient (:meth:`weighted_outputs`): w·BN(z) is BN(z) with weight w, whose gradient
    batch norm computes from the input it keeps anyway, so the op's output need not be kept for the
    gradient of w.

    With ``relaxation.partial_channels = K > 1`` (PC-DARTS, Xu et al., ICLR 2020, sec. 3.1) the ops are
    built for ``channels / K`` channels: the first ``1/K`` of the input's channels go through the mixture,
    the rest bypass it (max-pooled by 2 on a stride-2 edge), and the two parts are concatenated and
    channel-shuffled with K groups.

    ``auxiliary_skip=True`` adds DARTS-'s auxiliary skip connection (Chu et al., ICLR 2021): the edge
    output gains ``skip_weight · skip(x)`` (identity; a factorized reduction on a stride-2 edge), with the
    weight the forward pass is given (the search decays it to 0).

    ``pool_batch_norm`` follows the ops registered with ``bn_in_search`` (the pooling ops) by a non-affine
    batch norm, as the released DARTS and PC-DARTS mixed ops do (``if 'pool' in primitive``). GDAS's and
    DrNAS's released DARTS-space mixed ops and AutoDL's NAS-Bench-201 cells have none (DrNAS comments it
    out: xiangning-chen/DrNAS, commit f2caa4d, DARTS-space/model_search.py, lines 37-38; AutoDL-Projects,
    commit f46486e, xautodl/models/cell_operations.py, ``POOLING``): ``pool_batch_norm=False``.
    """

    def __init__(
        self,
        op_names: Sequence[str],
        channels: int,
        stride: int,
        relaxation: Relaxation,
        auxiliary_skip: bool = False,
        pool_batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.op_names = tuple(op_names)
        self.stride = stride
        self.relaxation = relaxation
        self.pool_batch_norm = bool(pool_batch_norm)
        op_channels = relaxation.op_channels(channels)
        ops, indices = [], []
        for index, name in enumerate(self.op_names):
            spec = get_op(name)
            if spec.is_zero:
                continue
            op = spec.factory(op_channels, stride, False)
            if spec.bn_in_search and self.pool_batch_norm:
                op = nn.Sequential(op, nn.BatchNorm2d(op_channels, affine=False))
            ops.append(op)
            indices.append(index)
        self.ops = nn.ModuleList(ops)
        self.op_indices: tuple[int, ...] = tuple(indices)
        self._starts_with_relu = tuple(
            isinstance(op, nn.Sequential) and len(op) > 1 and isinstance(op[0], nn.ReLU) for op in ops
        )
        self._ends_with_plain_bn = tuple(
            isinstance(op, nn.Sequential) and len(op) > 1 and type(op[-1]) is nn.BatchNorm2d and not op[-1].affine
            for op in ops
        )
        self.auxiliary_skip: nn.Module | None = None
        if auxiliary_skip:
            self.auxiliary_skip = FactorizedReduce(channels, channels, affine=False) if stride == 2 else nn.Identity()

    def weighted_outputs(self, x: Tensor, weights: Tensor) -> Iterator[tuple[int, Tensor]]:
        """``(alpha_column, weights[column] · op(x))`` for every op that computes something (``none``
        excluded). Ops that start with a ReLU share one ReLU of ``x``; an op ending in a non-affine batch
        norm runs that batch norm with the weight as its scale (see the class docstring)."""
        # Folding only pays when the weights need a gradient (the architecture step): w · y keeps y only then.
        fold = weights.requires_grad
        activated = None
        for index, op, relu_first, bn_last in zip(self.op_indices, self.ops, self._starts_with_relu, self._ends_with_plain_bn):
            bn_last = bn_last and fold
            if not relu_first and not bn_last:
                yield index, weights[index] * op(x)
                continue
            assert isinstance(op, nn.Sequential), "only sequences are marked as starting with a ReLU or ending in a batch norm"
            if relu_first:
                if activated is None:
                    activated = F.relu(x)
                out, first = activated, 1
            else:
                out, first = x, 0
            for layer in islice(op, first, len(op) - 1 if bn_last else len(op)):
                out = layer(out)
            if bn_last:
                bn = op[-1]
                assert isinstance(bn, nn.BatchNorm2d), "only ops whose last layer is a BatchNorm2d are marked so"
                yield index, _scaled_batch_norm(bn, out, weights[index])
            else:
                yield index, weights[index] * out

    def op_output(self, column: int, x: Tensor) -> Tensor:
        """The output of the op in α's column ``column`` alone (zeros for a zero op)."""
        if column not in self.op_indices:
            return self.zeros(x)
        position = self.op_indices.index(column)
        op = self.ops[position]
        if self._starts_with_relu[position]:
            assert isinstance(op, nn.Sequential), "only sequences are marked as starting with a ReLU"
            # A fresh F.relu of the input: an in-place ReLU of a registered op must not overwrite the
            # state other edges read.
            out = F.relu(x)
            for layer in islice(op, 1, None):
                out = layer(out)
            return out
        return op(x)

    def zeros(self, x: Tensor) -> Tensor:
        """The output of a zero op for input ``x``."""
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)

    def forward(
        self, x: Tensor, weights: Tensor, scale: Tensor | None = None, column: int | None = None, skip_weight: float = 0.0,
    ) -> Tensor:
        """The edge's output; ``scale`` (edge normalisation) multiplies all of it.

        The scale is folded into the op weights (and from there into their batch norms) instead of
        multiplying the finished output, which would keep that output for the scale's gradient.
        ``column``: the op a sampling relaxation picked for this edge, known on the host
        (:attr:`~darts_lightning.spaces.mixing.Mixing.columns`); it is passed on to :meth:`Relaxation.mix`.
        ``skip_weight``: the weight of the auxiliary skip connection, when the edge has one.
        """
        if scale is not None:
            weights = weights * scale
        k = self.relaxation.partial_channels
        part = x.shape[1] // k
        inputs = x if k == 1 else x[:, :part]
        mixed = self.relaxation.mix(self, inputs, weights, column)
        if k == 1:
            out = mixed
        else:
            bypass = x[:, part:]
            if self.stride == 2:
                bypass = F.max_pool2d(bypass, 2, 2)
            if scale is not None:
                bypass = scale * bypass
            out = channel_shuffle(torch.cat([mixed, bypass], dim=1), k)
        if self.auxiliary_skip is not None and skip_weight != 0.0:
            out = out + (skip_weight if scale is None else skip_weight * scale) * self.auxiliary_skip(x)
        return out

    def extra_repr(self) -> str:
        extra = f", partial_channels={self.relaxation.partial_channels}" if self.relaxation.partial_channels > 1 else ""
        return f"ops={list(self.op_names)}, stride={self.stride}, relaxation={self.relaxation.name}{extra}"


def _scaled_batch_norm(bn: nn.BatchNorm2d, x: Tensor, scale: Tensor) -> Tensor:
    """``scale · bn(x)`` for a non-affine ``bn``, computed as one batch norm whose weight is ``scale``.

    Follows :meth:`torch.nn.BatchNorm2d.forward` (running statistics, ``num_batches_tracked``), so the
    module's state evolves exactly as if it had been called.
    """
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    use_batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    track = not bn.training or bn.track_running_stats
    weight = scale.to(x.device).reshape(1).expand(x.shape[1]).contiguous()  # kernels read it densely
    return F.batch_norm(
        x, bn.running_mean if track else None, bn.running_var if track else None, weight, None,
        use_batch_stats, factor, bn.eps,
    )


def drop_path(x: Tensor, drop_prob: float, mask: Tensor | None = None) -> Tensor:
    """Zero whole samples with probability ``drop_prob`` and rescale the rest (Larsson et al., FractalNet).

    ``mask``: the ``[batch]`` 0/1 keep mask, when the caller draws it (the supernet draws every edge's
    mask at once from the search's seeded generator); otherwise drawn here.
    """
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    if mask is None:
        mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    else:
        mask = mask.to(x.dtype).reshape(-1, 1, 1, 1)
    return x / keep * mask


class FixedEdge(nn.Module):
    """One op, as chosen by a genotype; drop-path on non-identity ops while training."""

    def __init__(self, op_name: str, channels: int, stride: int, affine: bool = True) -> None:
        super().__init__()
        self.op_name = op_name
        self.op = build_op(op_name, channels, stride, affine)
        self.drop_prob = 0.0

    def forward(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        out = self.op(x)
        if self.training and self.drop_prob > 0.0 and not isinstance(self.op, (Identity, Zero)):
            out = drop_path(out, self.drop_prob)
        return out

    def extra_repr(self) -> str:
        return f"op={self.op_name!r}"
