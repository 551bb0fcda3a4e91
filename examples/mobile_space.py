"""A search space in one file: a MobileNet-style stack of choice blocks.

This file defines a whole search space on darts_lightning's public seams, without changing the package. Put
its folder on the import path and name the space by class path, and every search of the package runs on it:
DARTS of either order, GDAS and the other relaxations, the remedies, random search, regularized evolution
and the other discrete searchers with the scratch or weight-sharing evaluators, the export of the answer and
the retraining of its network (see the README, "Your own search space").

The space (in the spirit of ProxylessNAS, Cai et al., ICLR 2019, and FBNet, Wu et al., CVPR 2019, whose
spaces are stacks of inverted-residual blocks of searched kernel size and expansion ratio):

* a 3×3 convolution stem, three stages of ``depths`` = (2, 2, 2) searched positions at C, 2C and 4C channels,
  each stage after the first entered through a fixed strided 3×3 convolution, then global pooling and a
  linear classifier;
* every position chooses one block: an inverted residual ``mbconv`` (1×1 expansion by 3 or 6, a k×k depthwise
  convolution, a 1×1 projection; Sandler et al., CVPR 2018) with k = 3 or 5, a depthwise-separable ``sepconv``
  with k = 3 or 5, or ``skip`` (the identity: the position is dropped). Seven candidates, 7⁶ = 117,649 stacks.

What it defines, and which part of the package uses it:

* :class:`Block` and :class:`MobileArch`, the answer type, with its own text form
  (``mbconv(k=5,e=6) skip | sepconv(k=3) mbconv(k=3,e=3) | ...``), its printout (:meth:`MobileArch.table`)
  and its drawing (:func:`draw_stack`);
* the candidate blocks as ops (:func:`darts_lightning.register_op`), so that the package's mixed edge
  (:class:`darts_lightning.MixedEdge`) mixes them under any relaxation and its fixed edge
  (:class:`darts_lightning.FixedEdge`) runs the chosen one: the block the search trains is the block the
  retraining builds;
* :class:`MobileSupernet`, the supernet contract (:class:`darts_lightning.spaces.supernet.Supernet`): one α row
  per position, the forward pass under a relaxation's mixing or a single path, the derivation of the answer;
* :class:`MobileSpace`, the space contract (:class:`darts_lightning.SearchSpace`): networks, answers, and the
  discrete encoding (one decision of seven choices per position) with an isomorphism-aware key.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from darts_lightning import FixedEdge, MixedEdge, SearchSpace, register_op
from darts_lightning.spaces.base import OpSite
from darts_lightning.spaces.mixing import Mixing, Relaxation
from darts_lightning.spaces.supernet import Supernet

__all__ = ["Block", "MobileArch", "MobileSpace", "MobileSupernet", "MobileNetwork", "CANDIDATES", "draw_stack"]

KERNELS = (3, 5)
EXPANSIONS = (3, 6)


# ---------------------------------------------------------------------------------------------------- blocks


class InvertedResidual(nn.Module):
    """x + project(depthwise_k(expand_e(x))): MobileNetV2's block at stride 1 (ReLU6 after the first two
    convolutions, none after the projection)."""

    def __init__(self, channels: int, kernel: int, expansion: int, affine: bool) -> None:
        super().__init__()
        hidden = channels * expansion
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden, affine=affine), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden, affine=affine), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels, affine=affine),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SeparableResidual(nn.Module):
    """x + pointwise(depthwise_k(x)): a depthwise-separable convolution with a residual connection."""

    def __init__(self, channels: int, kernel: int, affine: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False),
            nn.BatchNorm2d(channels, affine=affine), nn.ReLU6(inplace=True),
            nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels, affine=affine),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _check_stride(stride: int) -> None:
    if stride != 1:
        raise ValueError(f"the mobile space's blocks run at stride 1 (the strided transitions are fixed), got {stride}")


def mbconv(kernel: int, expansion: int) -> Callable[[int, int, bool], nn.Module]:
    """The op factory ``(channels, stride, affine)`` of an inverted residual block."""

    def factory(channels: int, stride: int, affine: bool) -> nn.Module:
        _check_stride(stride)
        return InvertedResidual(channels, kernel, expansion, affine)

    return factory


def sepconv(kernel: int) -> Callable[[int, int, bool], nn.Module]:
    """The op factory ``(channels, stride, affine)`` of a separable residual block."""

    def factory(channels: int, stride: int, affine: bool) -> nn.Module:
        _check_stride(stride)
        return SeparableResidual(channels, kernel, affine)

    return factory


@dataclass(frozen=True)
class Block:
    """One position's choice: the block ``op`` (``mbconv``, ``sepconv`` or ``skip``) and its numbers, the
    depthwise ``kernel`` size and the ``expansion`` ratio (``mbconv`` only; 1 for the others)."""

    op: str
    kernel: int = 0
    expansion: int = 1

    def __post_init__(self) -> None:
        valid = {
            "mbconv": self.kernel in KERNELS and self.expansion in EXPANSIONS,
            "sepconv": self.kernel in KERNELS and self.expansion == 1,
            "skip": self.kernel == 0 and self.expansion == 1,
        }
        if not valid.get(self.op, False):
            raise ValueError(
                f"{self.op}(k={self.kernel},e={self.expansion}) is not a block of the mobile space; the blocks are: "
                f"mbconv(k=K,e=E) with K in {KERNELS} and E in {EXPANSIONS}, sepconv(k=K), skip"
            )

    @property
    def op_name(self) -> str:
        """The op this block is registered as (a column of α)."""
        if self.op == "skip":
            return "skip_connect"
        return f"mobile_{self.op}_k{self.kernel}" + (f"_e{self.expansion}" if self.op == "mbconv" else "")

    def __str__(self) -> str:
        if self.op == "mbconv":
            return f"mbconv(k={self.kernel},e={self.expansion})"
        return "skip" if self.op == "skip" else f"{self.op}(k={self.kernel})"

    @classmethod
    def parse(cls, text: str) -> Block:
        """Read ``mbconv(k=5,e=6)``, ``sepconv(k=3)`` or ``skip``."""
        match = re.fullmatch(r"\s*(\w+)\s*(?:\(\s*k\s*=\s*(\d+)\s*(?:,\s*e\s*=\s*(\d+)\s*)?\))?\s*", text)
        if match is None:
            raise ValueError(f"cannot read the block {text!r}; blocks are written like mbconv(k=5,e=6), sepconv(k=3), skip")
        op, kernel, expansion = match.group(1), match.group(2), match.group(3)
        return cls(op, int(kernel or 0), int(expansion or 1))


#: The seven candidates of every position, in α's column order.
CANDIDATES: tuple[Block, ...] = (
    *(Block("mbconv", k, e) for k in KERNELS for e in EXPANSIONS), *(Block("sepconv", k) for k in KERNELS), Block("skip"),
)

# The candidate blocks as ops of the package (``skip_connect``, the identity at stride 1, is the package's own).
# ``overwrite``: importing this file again (a reload) registers the same blocks again.
for _block in CANDIDATES:
    if _block.op == "mbconv":
        register_op(_block.op_name, mbconv(_block.kernel, _block.expansion), overwrite=True)
    elif _block.op == "sepconv":
        register_op(_block.op_name, sepconv(_block.kernel), overwrite=True)

OP_NAMES: tuple[str, ...] = tuple(block.op_name for block in CANDIDATES)


# ---------------------------------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class MobileArch:
    """A stack: the block of every position, stage by stage (``stages[s][i]``: position ``i`` of stage ``s``)."""

    stages: tuple[tuple[Block, ...], ...]

    @property
    def blocks(self) -> tuple[Block, ...]:
        """Every position's block, in order."""
        return tuple(block for stage in self.stages for block in stage)

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(stage) for stage in self.stages)

    def __str__(self) -> str:
        return " | ".join(" ".join(str(block) for block in stage) for stage in self.stages)

    @classmethod
    def parse(cls, text: str) -> MobileArch:
        """Read the text form: stages separated by ``|``, blocks by spaces."""
        stages = []
        for part in text.strip().split("|"):
            tokens = re.findall(r"\w+\s*(?:\([^)]*\))?", part)
            if not tokens:
                raise ValueError(f"a stage of {text!r} has no block; write each stage's blocks, stages separated by '|'")
            stages.append(tuple(Block.parse(token) for token in tokens))
        return cls(tuple(stages))

    def table(self) -> str:
        """A printout, one line per position (as a paper's architecture table)."""
        lines = ["stage  position  block     kernel  expansion"]
        for s, stage in enumerate(self.stages, start=1):
            for i, block in enumerate(stage, start=1):
                numbers = "-       -" if block.op == "skip" else f"{block.kernel}x{block.kernel}     {block.expansion}"
                lines.append(f"{s:<5}  {i:<8}  {block.op:<8}  {numbers}")
        return "\n".join(lines)


def draw_stack(arch: MobileArch) -> Any:
    """A matplotlib figure: one box per position, its height the expansion ratio, its colour the block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"mbconv": "#4C72B0", "sepconv": "#55A868", "skip": "#DDDDDD"}
    figure, axes = plt.subplots(figsize=(1.2 * len(arch.blocks) + 1, 2.6))
    x = 0.0
    for s, stage in enumerate(arch.stages):
        for block in stage:
            height = 0.3 if block.op == "skip" else 0.3 + 0.1 * block.expansion
            axes.add_patch(plt.Rectangle((x, 0), 0.9, height, color=colours[block.op]))
            label = "skip" if block.op == "skip" else f"{block.op}\n{block.kernel}×{block.kernel}"
            label += f"\ne={block.expansion}" if block.op == "mbconv" else ""
            axes.text(x + 0.45, height + 0.05, label, ha="center", va="bottom", fontsize=8)
            x += 1.0
        if s < len(arch.stages) - 1:
            axes.axvline(x - 0.05, color="black", linestyle=":", linewidth=1)
    axes.set_xlim(-0.1, x)
    axes.set_ylim(0, 1.4)
    axes.axis("off")
    figure.tight_layout()
    return figure


# ---------------------------------------------------------------------------------------------------- networks


def _stack(
    module: nn.Module, position: Callable[[int], nn.Module], *, in_channels: int, num_classes: int, channels: int,
    depths: Sequence[int],
) -> None:
    """The network around ``position(width)``: stem, stages (a fixed strided transition before all but the first),
    head. The supernet and the retrained network share it."""
    widths = [channels * 2**s for s in range(len(depths))]
    module.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                                nn.ReLU6(inplace=True))
    transitions, positions = [], []
    for s, (width, depth) in enumerate(zip(widths, depths)):
        before = widths[s - 1] if s else widths[0]
        transitions.append(nn.Identity() if s == 0 else nn.Sequential(
            nn.Conv2d(before, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU6(inplace=True),
        ))
        positions.append(nn.ModuleList(position(width) for _ in range(depth)))
    module.transitions = nn.ModuleList(transitions)
    module.positions = nn.ModuleList(positions)
    module.pooling = nn.AdaptiveAvgPool2d(1)
    module.classifier = nn.Linear(widths[-1], num_classes)


class MobileNetwork(nn.Module):
    """The network of one stack ``arch``; ``repeats``: each chosen block is repeated this many times (a depth
    multiplier for the retraining, 1: the searched network)."""

    stem: nn.Sequential
    transitions: nn.ModuleList
    positions: nn.ModuleList
    pooling: nn.AdaptiveAvgPool2d
    classifier: nn.Linear

    def __init__(self, arch: MobileArch, *, num_classes: int, in_channels: int, channels: int, repeats: int = 1) -> None:
        super().__init__()
        self.arch = arch
        blocks = iter(block for block in arch.blocks for _ in range(repeats))
        _stack(self, lambda width: FixedEdge(next(blocks).op_name, width, 1, affine=True), in_channels=in_channels,
               num_classes=num_classes, channels=channels, depths=[d * repeats for d in arch.depths])

    def forward(self, x: Tensor) -> Tensor:
        out = self.stem(x)
        for transition, stage in zip(self.transitions, self.positions):
            out = transition(out)
            for edge in stage:
                out = edge(out)
        return self.classifier(torch.flatten(self.pooling(out), 1))


class MobileSupernet(Supernet[MobileArch]):
    """Every position a mixed edge over the seven candidate blocks, weighted through ``relaxation`` by one α
    row per position (α: ``[positions, 7]``)."""

    op_names = OP_NAMES
    stem: nn.Sequential
    transitions: nn.ModuleList
    positions: nn.ModuleList
    pooling: nn.AdaptiveAvgPool2d
    classifier: nn.Linear

    def __init__(self, relaxation: Relaxation, *, in_channels: int, num_classes: int, channels: int,
                 depths: Sequence[int]) -> None:
        super().__init__(relaxation)
        self.channels, self.depths = channels, tuple(depths)
        _stack(self, lambda width: MixedEdge(OP_NAMES, width, 1, relaxation, pool_batch_norm=False),
               in_channels=in_channels, num_classes=num_classes, channels=channels, depths=depths)
        self.alpha = nn.Parameter(1e-3 * torch.randn(sum(depths), len(OP_NAMES)))

    def named_arch_parameters(self) -> dict[str, nn.Parameter]:
        return {"alpha": self.alpha}

    def alphas(self) -> dict[str, Tensor]:
        return {"blocks": self.alpha}

    def edge_labels(self) -> list[str]:
        return [f"s{s + 1}b{i + 1}" for s, depth in enumerate(self.depths) for i in range(depth)]

    def forward(self, x: Tensor, detach_alpha: bool = False, path: Mapping[str, Tensor] | None = None) -> Tensor:
        if path is not None:
            mixing = Mixing(path["blocks"].to(self.alpha.device, self.alpha.dtype))
        else:
            mixing = self.relaxation.mixing(self.alpha, self.generator("blocks") if self.relaxation.samples else None)
            if detach_alpha:
                mixing = mixing._replace(weights=mixing.weights.detach())
        out, row = self.stem(x), 0
        for transition, stage in zip(self.transitions, self.positions):
            out = transition(out)
            for edge in stage:
                column = None if mixing.columns is None else mixing.columns[row]
                out = edge(out, mixing.weights[row], None, column, skip_weight=self.auxiliary_skip_weight)
                row += 1
        return self.classifier(torch.flatten(self.pooling(out), 1))

    def derive(self) -> MobileArch:
        """The strongest block of every position."""
        best = self.relaxation.derivation_weights(self.alpha.detach()).argmax(dim=-1).tolist()
        return MobileSpace.arch_of(best, self.depths)

    def path(self, arch: MobileArch) -> dict[str, Tensor]:
        if not isinstance(arch, MobileArch) or arch.depths != self.depths:
            raise ValueError(f"this supernet runs stacks of depths {self.depths}, got {arch}")
        rows = torch.zeros(sum(self.depths), len(OP_NAMES))
        for row, block in enumerate(arch.blocks):
            rows[row, CANDIDATES.index(block)] = 1.0
        return {"blocks": rows}

    def space_signature(self) -> dict[str, Any]:
        return {"space": "mobile", "op_names": list(OP_NAMES), "channels": self.channels, "depths": list(self.depths),
                "relaxation_args": self.relaxation.describe()}


# ---------------------------------------------------------------------------------------------------- the space


class MobileSpace(SearchSpace[MobileArch]):
    """The MobileNet-style stack (see the module docstring).

    Args:
        channels: the first stage's width C (the stages have C, 2C and 4C channels).
        depths: searched positions per stage.
    """

    name = "mobile"
    answer_file = "stack.txt"

    def __init__(self, channels: int = 16, depths: Sequence[int] = (2, 2, 2)) -> None:
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels!r}")
        depths = tuple(depths)
        if not depths or any(not isinstance(d, int) or d < 1 for d in depths):
            raise ValueError(f"depths must be positive integers, one per stage, got {list(depths)!r}")
        self.channels, self.depths = channels, depths

    @staticmethod
    def arch_of(columns: Sequence[int], depths: Sequence[int]) -> MobileArch:
        """The stack whose position ``p`` takes candidate ``columns[p]``."""
        blocks, stages = [CANDIDATES[c] for c in columns], []
        for depth in depths:
            stages.append(tuple(blocks[:depth]))
            blocks = blocks[depth:]
        return MobileArch(tuple(stages))

    # ------------------------------------------------------------------ networks

    def build_supernet(self, relaxation: Relaxation, *, in_channels: int, num_classes: int,
                       image_size: int | None = None, auxiliary_skip: bool = False) -> MobileSupernet:
        if auxiliary_skip:
            raise ValueError(
                "the mobile space's blocks are residual (x + block(x)) and 'skip' is a candidate: DARTS-'s auxiliary "
                "skip connection would add a second identity to every position; remove the AuxiliarySkip remedy"
            )
        return MobileSupernet(relaxation, in_channels=in_channels, num_classes=num_classes, channels=self.channels,
                              depths=self.depths)

    def build_network(self, arch: MobileArch, *, num_classes: int, in_channels: int = 3, image_size: int | None = None,
                      channels: int | None = None, layers: int | None = None) -> MobileNetwork:
        """The stack's network; ``channels``: C (the space's unless given), ``layers``: how many times each chosen
        block is repeated (1 unless given)."""
        self._check(arch)
        return MobileNetwork(arch, num_classes=num_classes, in_channels=in_channels,
                             channels=self.channels if channels is None else channels,
                             repeats=1 if layers is None else layers)

    def op_sites(self, *, in_channels: int, image_size: int, channels: int | None = None,
                 layers: int | None = None) -> dict[str, list[list[OpSite]]]:
        """Every position at its stage's width and resolution (each strided transition halves the image, rounding
        up), once per repeat; the hardware-aware searches price the blocks there."""
        c, repeats = self.channels if channels is None else channels, 1 if layers is None else layers
        rows, size = [], image_size
        for stage, depth in enumerate(self.depths):
            size = size if stage == 0 else (size + 1) // 2
            rows += [[OpSite(c * 2**stage, 1, size)] * repeats for _ in range(depth)]
        return {"blocks": rows}

    # ------------------------------------------------------------------ answers

    def _check(self, arch: Any) -> MobileArch:
        if not isinstance(arch, MobileArch):
            raise TypeError(f"the mobile space's answers are MobileArch stacks, got {type(arch).__name__}")
        if arch.depths != self.depths:
            raise ValueError(f"the stack {arch} has depths {list(arch.depths)}; this space has {list(self.depths)}")
        return arch

    def parse(self, text: str) -> MobileArch:
        return self._check(MobileArch.parse(text))

    def format(self, arch: MobileArch) -> str:
        return str(self._check(arch))

    def draw(self, arch: MobileArch) -> Any:
        return draw_stack(arch)

    def ops_of(self, arch: MobileArch) -> dict[str, list[str]]:
        return {"blocks": [block.op_name for block in arch.blocks]}

    # ------------------------------------------------------------------ discrete search

    def decisions(self) -> list[int]:
        return [len(CANDIDATES)] * sum(self.depths)

    def from_decisions(self, choices: Sequence[int]) -> MobileArch:
        return self.arch_of(choices, self.depths)

    def to_decisions(self, arch: MobileArch) -> list[int]:
        return [CANDIDATES.index(block) for block in self._check(arch).blocks]

    def sample(self, generator: random.Random) -> MobileArch:
        return self.from_decisions([generator.randrange(n) for n in self.decisions()])

    def mutate(self, arch: MobileArch, generator: random.Random) -> MobileArch:
        choices = self.to_decisions(arch)
        position = generator.randrange(len(choices))
        choices[position] = generator.choice([c for c in range(len(CANDIDATES)) if c != choices[position]])
        return self.from_decisions(choices)

    def crossover(self, a: MobileArch, b: MobileArch, generator: random.Random) -> MobileArch:
        return self.from_decisions([x if generator.random() < 0.5 else y
                                    for x, y in zip(self.to_decisions(a), self.to_decisions(b))])

    def neighbours(self, arch: MobileArch) -> list[MobileArch]:
        choices, found = self.to_decisions(arch), []
        for position, current in enumerate(choices):
            for c in range(len(CANDIDATES)):
                if c != current:
                    found.append(self.from_decisions(choices[:position] + [c] + choices[position + 1:]))
        return found

    def key(self, arch: MobileArch) -> Hashable:
        """Stacks that differ only in where a stage's skips sit compute the same function: a stage is the
        sequence of its non-skip blocks."""
        return tuple(tuple(str(b) for b in stage if b.op != "skip") for stage in self._check(arch).stages)
