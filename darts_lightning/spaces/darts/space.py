"""The DARTS CNN cell space (Liu et al., ICLR 2019): the space object that the searches, evaluators, the
retraining and the command line use."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from darts_lightning.spaces.base import OpSite, SearchSpace, register_space
from darts_lightning.spaces.cell import dense_edges
from darts_lightning.spaces.darts.genotype import Genotype
from darts_lightning.spaces.darts.network import EvalNetwork, Variant
from darts_lightning.spaces.darts.supernet import GENOTYPE_RULES, SearchNetwork, cell_plan, check_image_size
from darts_lightning.spaces.mixing import Relaxation
from darts_lightning.spaces.ops import DARTS_OPS, resolve_op_names
from darts_lightning.utils.validation import check_choice, check_range

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DartsSpace"]


@register_space("darts")
class DartsSpace(SearchSpace[Genotype]):
    """The DARTS cell: per node of the normal and the reduction cell, two inputs among the earlier states and
    one op per input. Answers are :class:`~darts_lightning.Genotype` s.

    Args:
        ops: the candidate ops of the supernet's mixed edges (registered names or import paths); the discrete
            searchers choose among them without ``none``, as a derived genotype does.
        nodes: intermediate nodes per cell (4). multiplier: nodes concatenated into a cell's output (4).
        channels, layers, stem_multiplier: the supernet's initial channels C (16), cells L (8) and stem width
            factor (3): the paper's search network.
        genotype_rule: how the answer is derived from the supernet: ``darts`` (the two strongest edges into
            each node, ``none`` excluded), ``gdas`` (the two strongest (op, input) pairs) or ``snas``
            (``none`` competes like any op).
        edge_normalization: PC-DARTS's per-edge parameters β, softmax-normalised over each node's inputs;
            edges are ranked by softmax(α)·softmax(β).
        pool_batch_norm: a non-affine batch norm after the mixed edges' pooling ops (DARTS, PC-DARTS, SNAS:
            yes; the released GDAS and DrNAS DARTS-space code: no).
        last_activation: batch norm and ReLU before the supernet's global pooling (GDAS's ``lastact``).
        drop_path: drop-path probability on every mixed edge's output during the search (SNAS: 0.3).
    """

    name = "darts"
    answer_file = "genotype.json"

    def __init__(
        self,
        ops: Sequence[str] = DARTS_OPS,
        nodes: int = 4,
        multiplier: int = 4,
        channels: int = 16,
        layers: int = 8,
        stem_multiplier: int = 3,
        genotype_rule: str = "darts",
        edge_normalization: bool = False,
        pool_batch_norm: bool = True,
        last_activation: bool = False,
        drop_path: float = 0.0,
    ) -> None:
        self.ops = resolve_op_names(ops)
        for name, value in (("nodes", nodes), ("channels", channels), ("layers", layers), ("stem_multiplier", stem_multiplier)):
            check_range(name, value, 1, integer=True)
        check_range("multiplier", multiplier, 1, nodes, integer=True,
                    hint="a cell concatenates the last `multiplier` of its `nodes` nodes")
        check_choice("genotype_rule", genotype_rule, GENOTYPE_RULES)
        for name, flag in (("edge_normalization", edge_normalization), ("pool_batch_norm", pool_batch_norm),
                           ("last_activation", last_activation)):
            check_choice(name, flag, (True, False))
        check_range("drop_path", drop_path, 0, 1, high_open=True)
        self.op_names = tuple(op for op in self.ops if op != "none")
        if not self.op_names:
            raise ValueError(f"the DARTS space needs an op besides 'none', got ops {list(self.ops)}")
        self.nodes, self.multiplier = nodes, multiplier
        self.channels, self.layers, self.stem_multiplier = channels, layers, stem_multiplier
        self.genotype_rule, self.edge_normalization = genotype_rule, edge_normalization
        self.pool_batch_norm, self.last_activation, self.drop_path = pool_batch_norm, last_activation, drop_path
        # For node i, the unordered input pairs among states 0..i+1.
        self._pairs = [list(itertools.combinations(range(i + 2), 2)) for i in range(nodes)]
        self._dense = dense_edges(nodes)
        #: Per cell type, the candidate ops of each edge (α's row order) when every edge has its own (R-DARTS's
        #: S1, set by :class:`~darts_lightning.RDartsSpace`); ``None``: ``ops`` on every edge.
        self.edge_ops: dict[str, tuple[tuple[str, ...], ...]] | None = None

    def edge_op_names(self) -> dict[str, list[tuple[str, ...]]]:
        """Per cell type, the ops a derived or drawn cell may put on each edge (α's row order), ``none``
        excluded: :attr:`op_names` on every edge, or each edge's own candidates (R-DARTS's S1). The discrete
        searchers encode an edge's op as its position in that edge's list."""
        if self.edge_ops is None:
            return {cell: [self.op_names] * len(self._dense) for cell in ("normal", "reduce")}
        return {
            cell: [tuple(op for op in ops if op != "none") for ops in rows] for cell, rows in self.edge_ops.items()
        }

    def _edge_choices(self) -> int:
        """The number of ops an edge chooses among, the same on every edge (a decision's size)."""
        widths = {len(ops) for rows in self.edge_op_names().values() for ops in rows}
        if len(widths) != 1:
            raise ValueError(f"the discrete DARTS space needs as many ops on every edge, got {sorted(widths)}")
        return widths.pop()

    # ------------------------------------------------------------------ networks

    def build_supernet(
        self, relaxation: Relaxation, *, in_channels: int, num_classes: int, image_size: int | None = None,
        auxiliary_skip: bool = False,
    ) -> SearchNetwork:
        if image_size is not None:
            check_image_size(image_size, self.layers)
        if relaxation.paths_only and self.edge_normalization:
            # A path runs its ops unscaled: β would never be read (and never trained).
            raise ValueError(
                f"edge_normalization weights edges by learned parameters β, which a single path does not use "
                f"(relaxation {relaxation.name!r} runs single paths only): set the space's edge_normalization to false"
            )
        return SearchNetwork(
            in_channels, num_classes, channels=self.channels, layers=self.layers, nodes=self.nodes,
            multiplier=self.multiplier, stem_multiplier=self.stem_multiplier, op_names=self.ops, relaxation=relaxation,
            edge_normalization=self.edge_normalization, auxiliary_skip=auxiliary_skip, genotype_rule=self.genotype_rule,
            pool_batch_norm=self.pool_batch_norm, last_activation=self.last_activation, drop_path_prob=self.drop_path,
            image_size=image_size, edge_ops=self.edge_ops,
        )

    def build_network(
        self, arch: Genotype, *, num_classes: int, in_channels: int = 3, image_size: int | None = None,
        channels: int | None = None, layers: int | None = None, auxiliary: bool = False, variant: Variant = "cifar",
    ) -> EvalNetwork:
        """The DARTS evaluation network of ``arch`` (:class:`~darts_lightning.EvalNetwork`; C = 36, 20 cells
        unless given). ``auxiliary``: the auxiliary head of the DARTS retraining, whose loss only a training
        that weights it uses (:class:`~darts_lightning.GenotypeClassifier`); off, the network is the plain
        classifier the contract describes. ``variant``: the CIFAR or the ImageNet stem."""
        return EvalNetwork(
            arch, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
            channels=36 if channels is None else channels, layers=20 if layers is None else layers,
            auxiliary=auxiliary, variant=variant,
        )

    def op_sites(
        self, *, in_channels: int, image_size: int, channels: int | None = None, layers: int | None = None,
    ) -> dict[str, list[list[OpSite]]]:
        """Sites of :meth:`build_network`'s CIFAR network: every cell's edges at the cell's channels; in a reduction
        cell the edges from the two inputs have stride 2 at the cell's input resolution, the others stride 1 at
        half of it."""
        channels = 36 if channels is None else channels
        layers = 20 if layers is None else layers
        check_image_size(image_size, layers, variant="cifar")
        edges = dense_edges(self.nodes)
        sites: dict[str, list[list[OpSite]]] = {"normal": [[] for _ in edges], "reduce": [[] for _ in edges]}
        size = image_size
        for _, _, c, reduction, _ in cell_plan(channels, layers, 3 * channels, multiplier=self.multiplier):
            for row, (src, _) in enumerate(edges):
                if reduction:
                    site = OpSite(c, 2, size) if src < 2 else OpSite(c, 1, size // 2)
                else:
                    site = OpSite(c, 1, size)
                sites["reduce" if reduction else "normal"][row].append(site)
            size = size // 2 if reduction else size
        return sites

    # ------------------------------------------------------------------ answers

    def parse(self, text: str) -> Genotype:
        return Genotype.resolve(text)

    def format(self, arch: Genotype) -> str:
        return repr(arch)

    def to_record(self, arch: Genotype) -> dict[str, Any]:
        return arch.to_dict()

    def from_record(self, record: Any, *, allow_import_paths: bool = False) -> Genotype:
        if not isinstance(record, dict):
            return Genotype.parse(str(record), allow_import_paths=allow_import_paths)
        # Import paths among the configured candidate ops are the configuration's own; others need consent.
        own = all(op in self.ops for op, _ in [*record.get("normal", []), *record.get("reduce", [])])
        return Genotype.from_dict(record, allow_import_paths=allow_import_paths or own, source="a recorded genotype")

    def write(self, arch: Genotype, directory: Path) -> Path:
        return arch.save(Path(directory) / self.answer_file)

    def read(self, path: Path, *, allow_import_paths: bool = False) -> Genotype:
        return Genotype.load(path, allow_import_paths=allow_import_paths)

    def draw(self, arch: Genotype) -> Figure:
        from darts_lightning.spaces.drawing import draw_genotype

        return draw_genotype(arch)

    def ops_of(self, arch: Genotype) -> dict[str, list[str]]:
        return {"normal": [op for op, _ in arch.normal], "reduce": [op for op, _ in arch.reduce]}

    # ------------------------------------------------------------------ discrete search

    def _concat(self) -> tuple[int, ...]:
        """The states a cell concatenates: the last ``multiplier`` nodes, as the space's supernet does."""
        return tuple(range(2 + self.nodes - self.multiplier, 2 + self.nodes))

    def sample(self, generator: random.Random) -> Genotype:
        if self.edge_ops is None:
            drawn = Genotype.random(generator, self.op_names, self.nodes)
            return dataclasses.replace(drawn, normal_concat=self._concat(), reduce_concat=self._concat())
        # As Genotype.random, each edge's op drawn among that edge's candidates.
        names, cells = self.edge_op_names(), []
        for cell in ("normal", "reduce"):
            genes: list[tuple[str, int]] = []
            for node in range(self.nodes):
                for src in sorted(generator.sample(range(node + 2), 2)):
                    genes.append((generator.choice(names[cell][self._dense.index((src, node + 2))]), src))
            cells.append(tuple(genes))
        return Genotype(cells[0], self._concat(), cells[1], self._concat()).validate(allow_import_paths=True)

    def decisions(self) -> list[int]:
        per_cell = []
        width = self._edge_choices()
        for i in range(self.nodes):
            per_cell += [len(self._pairs[i]), width, width]
        return per_cell * 2

    def _op_choice(self, ops: Sequence[str], op: str, cell: str, src: int, node: int) -> int:
        if op not in ops:
            raise ValueError(
                f"op {op!r} on the {cell} cell's edge {src}-{node + 2} is not among that edge's ops {list(ops)}"
            )
        return list(ops).index(op)

    def to_decisions(self, arch: Genotype) -> list[int]:
        choices = []
        names = self.edge_op_names()
        for cell, edges in (("normal", arch.normal), ("reduce", arch.reduce)):
            for i in range(self.nodes):
                (op_a, a), (op_b, b) = sorted(edges[2 * i : 2 * i + 2], key=lambda e: e[1])
                if a == b:
                    raise ValueError(f"node {i} takes state {a} twice; the discrete DARTS space needs distinct inputs")
                ops_a = names[cell][self._dense.index((a, i + 2))]
                ops_b = names[cell][self._dense.index((b, i + 2))]
                choices += [self._pairs[i].index((a, b)), self._op_choice(ops_a, op_a, cell, a, i),
                            self._op_choice(ops_b, op_b, cell, b, i)]
        return choices

    def from_decisions(self, choices: Sequence[int]) -> Genotype:
        cells = []
        names = self.edge_op_names()
        for c, cell in enumerate(("normal", "reduce")):
            edges: list[tuple[str, int]] = []
            for i in range(self.nodes):
                pair, op_a, op_b = choices[(c * self.nodes + i) * 3 : (c * self.nodes + i) * 3 + 3]
                a, b = self._pairs[i][pair]
                edges += [(names[cell][self._dense.index((a, i + 2))][op_a], a),
                          (names[cell][self._dense.index((b, i + 2))][op_b], b)]
            cells.append(tuple(edges))
        return Genotype(cells[0], self._concat(), cells[1], self._concat())

    def mutate(self, arch: Genotype, generator: random.Random) -> Genotype:
        choices = self.to_decisions(arch)
        sizes = self.decisions()
        candidates = [k for k, n in enumerate(sizes) if n > 1]
        k = generator.choice(candidates)
        choices[k] = generator.choice([c for c in range(sizes[k]) if c != choices[k]])
        return self.from_decisions(choices)

    def crossover(self, a: Genotype, b: Genotype, generator: random.Random) -> Genotype:
        return self.from_decisions(
            [x if generator.random() < 0.5 else y for x, y in zip(self.to_decisions(a), self.to_decisions(b))]
        )

    def neighbours(self, arch: Genotype) -> list[Genotype]:
        choices, out = self.to_decisions(arch), []
        for k, n in enumerate(self.decisions()):
            for c in range(n):
                if c != choices[k]:
                    out.append(self.from_decisions(choices[:k] + [c] + choices[k + 1 :]))
        return out

    def key(self, arch: Genotype) -> tuple[Any, ...]:
        # The two edges of a node are a sum: their order does not matter.
        return tuple(
            tuple(tuple(sorted(edges[2 * i : 2 * i + 2])) for i in range(self.nodes)) for edges in (arch.normal, arch.reduce)
        )
