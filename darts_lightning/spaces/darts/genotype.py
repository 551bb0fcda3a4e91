"""Genotypes: the discrete cells a search derives, in the format of the DARTS code.

``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[...])``:
two ``(op, input_state)`` pairs per intermediate node, in node order. States 0 and 1 are the cell's two
inputs, intermediate node ``i`` is state ``i + 2``.
"""

from __future__ import annotations

import ast
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from darts_lightning.spaces.ops import DARTS_OPS, get_op, import_path_ops
from darts_lightning.utils.files import atomic_write_text

__all__ = ["Genotype", "GenotypeError", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
_FORMAT = "darts_lightning.spaces.darts.genotype"

Edges = tuple[tuple[str, int], ...]

_DARTS_OPS_WITHOUT_NONE: tuple[str, ...] = tuple(op for op in DARTS_OPS if op != "none")


class GenotypeError(ValueError):
    """A genotype that cannot be read or does not fit the search space."""


def _edges(value: Any, field: str) -> Edges:
    try:
        pairs = [tuple(pair) for pair in value]
    except TypeError as error:
        raise GenotypeError(f"genotype field {field!r} must be a list of (op, input) pairs, got {value!r}") from error
    for pair in pairs:
        ok = len(pair) == 2 and isinstance(pair[0], str) and pair[0] != ""
        ok = ok and isinstance(pair[1], int) and not isinstance(pair[1], bool) and pair[1] >= 0
        if not ok:
            raise GenotypeError(f"genotype field {field!r} holds an invalid edge {pair!r}: expected (op name, input index >= 0)")
    return tuple((op, int(src)) for op, src in pairs)


def _concat(value: Any, field: str) -> tuple[int, ...]:
    try:
        states = tuple(value)
    except TypeError as error:
        raise GenotypeError(f"genotype field {field!r} must be a list of state indices, got {value!r}") from error
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in states):
        raise GenotypeError(f"genotype field {field!r} must hold integer state indices, got {value!r}")
    return tuple(int(s) for s in states)


@dataclass(frozen=True)
class Genotype:
    """An immutable DARTS genotype."""

    normal: Edges
    normal_concat: tuple[int, ...]
    reduce: Edges
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "normal", _edges(self.normal, "normal"))
        object.__setattr__(self, "reduce", _edges(self.reduce, "reduce"))
        object.__setattr__(self, "normal_concat", _concat(self.normal_concat, "normal_concat"))
        object.__setattr__(self, "reduce_concat", _concat(self.reduce_concat, "reduce_concat"))

    # ------------------------------------------------------------------ checks

    @property
    def nodes(self) -> int:
        """Number of intermediate nodes (two edges each)."""
        return len(self.normal) // 2

    def import_path_ops(self) -> list[str]:
        """The ops of this genotype given by import path (``package.module:factory``, as :func:`get_op`
        reads any unregistered name with a ``:`` or a ``.``), sorted; resolving them would import their modules."""
        return import_path_ops(op for op, _ in self.normal + self.reduce)

    def validate(
        self, nodes: int | None = None, *, allow_import_paths: bool = False, source: str = "the genotype"
    ) -> Genotype:
        """Check that every op is known and every edge fits a cell of ``nodes`` nodes; returns ``self``.

        Ops must be registered names. An op given as an import path (``package.module:factory``) would
        import that module, so it is accepted only with ``allow_import_paths=True``, for sources you trust;
        otherwise it is refused before any op is resolved, so nothing is imported. ``source`` names where
        the genotype came from (a file path) in that error.
        """
        imported = self.import_path_ops()
        if imported and not allow_import_paths:
            raise GenotypeError(
                f"genotype op {imported[0]!r} in {source} is an import path; loading it would import code. If you "
                "trust that source, allow it with allow_import_paths=True (command line: --model.allow_import_paths "
                "true), or register the op with darts_lightning.register_op and name it by its registered name"
            )
        for field in ("normal", "reduce"):
            edges: Edges = getattr(self, field)
            n = self.nodes if nodes is None else nodes
            if len(edges) != 2 * n:
                raise GenotypeError(
                    f"genotype {field!r} has {len(edges)} edges, but a cell of {n} nodes needs {2 * n} (two per node)"
                )
            for k, (op, src) in enumerate(edges):
                get_op(op)  # raises the unknown-op error with the valid names
                node = k // 2
                if src >= node + 2:
                    raise GenotypeError(
                        f"genotype {field!r} edge {k} ({op!r}, {src}) feeds node {node} (state {node + 2}) "
                        f"from state {src}; it may only take states 0..{node + 1}"
                    )
            concat = getattr(self, f"{field}_concat")
            if not concat or any(not 0 <= s < n + 2 for s in concat):
                raise GenotypeError(f"genotype {field + '_concat'!r} = {list(concat)} names states outside 0..{n + 1}")
        return self

    # ------------------------------------------------------------------ derivation

    @classmethod
    def from_alphas(
        cls,
        alpha_normal: Tensor,
        alpha_reduce: Tensor,
        op_names: Sequence[str],
        *,
        nodes: int = 4,
        multiplier: int = 4,
        k: int = 2,
        edge_weights_normal: Tensor | None = None,
        edge_weights_reduce: Tensor | None = None,
        already_normalized: bool = False,
        rule: str = "darts",
        edge_ops: Mapping[str, Sequence[Sequence[str]]] | None = None,
    ) -> Genotype:
        """Derive the discrete cells from architecture parameters by the DARTS rule (Liu et al., sec. 2.4).

        Per node keep the ``k`` incoming edges whose strongest non-``none`` op weight is largest; per kept
        edge keep its strongest non-``none`` op. Weights are ``softmax(α)`` per edge (pass
        ``already_normalized=True`` when ``alpha_*`` already are weights), optionally multiplied by a
        per-edge weight (PC-DARTS edge normalisation). Ties go to the lower index.

        ``rule="gdas"`` is the rule of GDAS's released code instead: per node keep the ``k`` strongest
        (op, input) pairs over all its incoming edges, so that two ops may come from the same input.

        ``edge_ops``: per cell type (``normal``, ``reduce``), the ops of each edge's columns, when every edge
        has its own candidates (R-DARTS's S1): column ``j`` of edge ``e`` is ``edge_ops[cell][e][j]``, and
        ``none`` is excluded edge by edge. Without it every edge's columns are ``op_names``.
        """
        if rule not in ("darts", "gdas"):
            raise GenotypeError(f"unknown genotype rule {rule!r}; valid rules are: darts, gdas")
        op_names = list(op_names)
        zero_columns = [i for i, name in enumerate(op_names) if get_op(name).is_zero]
        if edge_ops is None and len(zero_columns) == len(op_names):
            raise GenotypeError("every candidate op is a zero op; no genotype can be derived")
        expected = sum(2 + i for i in range(nodes))

        def edge_names(cell: str) -> list[list[str]]:
            if edge_ops is None:
                return [op_names] * expected
            names = [list(ops) for ops in edge_ops[cell]]
            if len(names) != expected or len({len(ops) for ops in names}) != 1:
                raise GenotypeError(
                    f"edge_ops[{cell!r}] must name as many ops for each of the {expected} edges of a cell of {nodes} nodes"
                )
            if any(all(get_op(op).is_zero for op in ops) for ops in names):
                raise GenotypeError(f"an edge of the {cell} cell has only zero ops; no genotype can be derived")
            return names

        def parse(alpha: Tensor, edge_weights: Tensor | None, names: list[list[str]]) -> Edges:
            alpha = alpha.detach().float().cpu()
            width = len(names[0])
            if alpha.shape != (expected, width):
                raise GenotypeError(
                    f"alpha has shape {tuple(alpha.shape)}; a cell of {nodes} nodes and {width} ops needs "
                    f"({expected}, {width})"
                )
            weights = alpha if already_normalized else torch.softmax(alpha, dim=-1)
            if edge_weights is not None:
                weights = weights * edge_weights.detach().float().cpu().reshape(-1, 1)
            weights = weights.clone()
            if edge_ops is None:
                weights[:, zero_columns] = -1.0  # never chosen
            else:
                for edge, ops in enumerate(names):
                    for column, name in enumerate(ops):
                        if get_op(name).is_zero:
                            weights[edge, column] = -1.0
            genes: list[tuple[str, int]] = []
            start = 0
            for node in range(nodes):
                rows = weights[start : start + node + 2]
                if rule == "gdas":
                    pairs = [(float(rows[src, o]), src, o) for src in range(node + 2) for o in range(width)]
                    for _, src, o in sorted(pairs, key=lambda t: (-t[0], t[1], t[2]))[:k]:
                        genes.append((names[start + src][o], src))
                    start += node + 2
                    continue
                strength = rows.max(dim=1).values.tolist()
                order = sorted(range(node + 2), key=lambda j: (-strength[j], j))[:k]
                for src in order:
                    row = rows[src].tolist()
                    best = max(range(len(row)), key=lambda o: (row[o], -o))
                    genes.append((names[start + src][best], src))
                start += node + 2
            return tuple(genes)

        concat = tuple(range(2 + nodes - multiplier, 2 + nodes))
        return cls(parse(alpha_normal, edge_weights_normal, edge_names("normal")), concat,
                   parse(alpha_reduce, edge_weights_reduce, edge_names("reduce")), concat)

    @classmethod
    def random(
        cls,
        generator: random.Random,
        op_names: Sequence[str] = _DARTS_OPS_WITHOUT_NONE,
        nodes: int = 4,
    ) -> Genotype:
        """A genotype drawn uniformly from the DARTS cell space: the baseline a search has to beat.

        For every node ``i`` of both cells, two distinct inputs among states ``0..i+1`` (without
        replacement), each with an op drawn uniformly from ``op_names``; every intermediate node is
        concatenated. ``none`` is left out by default because a derived DARTS cell never holds it. The two
        inputs of a node are stored in ascending order, so equal cells compare equal. All randomness comes
        from ``generator``, so the same seed gives the same genotype.
        """
        op_names = list(op_names)
        if not op_names:
            raise GenotypeError("op_names is empty; a random genotype needs at least one op")
        if nodes < 1:
            raise GenotypeError(f"a cell needs at least one intermediate node, got nodes={nodes}")

        def cell() -> Edges:
            genes: list[tuple[str, int]] = []
            for node in range(nodes):
                for src in sorted(generator.sample(range(node + 2), 2)):
                    genes.append((generator.choice(op_names), src))
            return tuple(genes)

        normal = cell()
        reduce = cell()
        concat = tuple(range(2, nodes + 2))
        return cls(normal, concat, reduce, concat).validate(allow_import_paths=True)

    # ------------------------------------------------------------------ text formats

    def __repr__(self) -> str:
        def edges(e: Edges) -> str:
            return "[" + ", ".join(f"({op!r}, {src})" for op, src in e) + "]"

        return (
            f"Genotype(normal={edges(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={edges(self.reduce)}, reduce_concat={list(self.reduce_concat)})"
        )

    __str__ = __repr__

    @classmethod
    def parse(cls, text: str, *, allow_import_paths: bool = False) -> Genotype:
        """Read the DARTS repr (``Genotype(normal=[...], normal_concat=..., ...)``) without ``eval``.

        Concats may be lists or ``range(a, b)`` as in the DARTS code's published genotypes. Unknown ops are
        rejected with the list of valid ones.
        """
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as error:
            raise GenotypeError(f"not a genotype repr (syntax error: {error.msg}): {text[:120]!r}") from error
        call = tree.body
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", getattr(call.func, "attr", None)) == "Genotype"):
            raise GenotypeError(
                f"expected 'Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)', got {text[:120]!r}"
            )
        if call.args:
            raise GenotypeError("Genotype(...) fields must be given by keyword")
        fields: dict[str, Any] = {}
        for keyword in call.keywords:
            if keyword.arg is None:
                raise GenotypeError("Genotype(...) fields must be given by keyword, not unpacked with **")
            fields[keyword.arg] = _literal(keyword.value, keyword.arg)
        missing = {"normal", "normal_concat", "reduce", "reduce_concat"} - set(fields)
        extra = set(fields) - {"normal", "normal_concat", "reduce", "reduce_concat"}
        if missing or extra:
            raise GenotypeError(f"genotype repr: missing fields {sorted(missing)}, unexpected fields {sorted(extra)}")
        return cls(**fields).validate(allow_import_paths=allow_import_paths, source="the genotype repr")

    # ------------------------------------------------------------------ published genotypes

    @staticmethod
    def published_names() -> list[str]:
        """Names of the published genotypes shipped with the package (see :mod:`darts_lightning.spaces.darts.published`)."""
        from darts_lightning.spaces.darts.published import PUBLISHED

        return sorted(PUBLISHED)

    @classmethod
    def published(cls, name: str) -> Genotype:
        """A published genotype by name, e.g. ``Genotype.published("DARTS_V2")``."""
        from darts_lightning.spaces.darts.published import PUBLISHED

        if name not in PUBLISHED:
            raise GenotypeError(f"no published genotype named {name!r}; known names: {', '.join(sorted(PUBLISHED))}")
        return cls.parse(PUBLISHED[name])

    @classmethod
    def resolve(cls, spec: Genotype | str | Path, *, allow_import_paths: bool = False) -> Genotype:
        """A genotype from a :class:`Genotype`, a published name, a DARTS repr string or a JSON file path."""
        if isinstance(spec, Genotype):
            return spec
        text = str(spec).strip()
        if text.startswith("Genotype("):
            return cls.parse(text, allow_import_paths=allow_import_paths)
        if text in cls.published_names():
            return cls.published(text)
        path = Path(text)
        if path.suffix == ".json" or path.exists():
            return cls.load(path, allow_import_paths=allow_import_paths)
        raise GenotypeError(
            f"cannot read a genotype from {text!r}: not a published name (known names: {', '.join(cls.published_names())}), "
            "not a 'Genotype(...)' repr and not an existing genotype.json file"
        )

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "schema_version": SCHEMA_VERSION,
            "normal": [list(e) for e in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [list(e) for e in self.reduce],
            "reduce_concat": list(self.reduce_concat),
            "repr": repr(self),
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, allow_import_paths: bool = False, source: str = "the genotype dict"
    ) -> Genotype:
        """Read :meth:`to_dict`'s format; ``source`` names where ``data`` came from in errors (see :meth:`validate`)."""
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise GenotypeError(f"not a darts_lightning genotype (expected \"format\": {_FORMAT!r})")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise GenotypeError(f"genotype schema_version {version!r} is not supported (this version reads {SCHEMA_VERSION})")
        try:
            genotype = cls(data["normal"], data["normal_concat"], data["reduce"], data["reduce_concat"])
        except KeyError as error:
            raise GenotypeError(f"genotype JSON lacks the field {error.args[0]!r}") from error
        return genotype.validate(allow_import_paths=allow_import_paths, source=source)

    def save(self, path: str | Path) -> Path:
        """Write the genotype as JSON (with a schema version), atomically: a failed write keeps the previous file."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path, *, allow_import_paths: bool = False) -> Genotype:
        """Read a genotype written by :meth:`save` (see :meth:`validate` for ``allow_import_paths``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no genotype file at {str(path)!r}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise GenotypeError(f"{str(path)!r} is not valid JSON: {error}") from error
        return cls.from_dict(data, allow_import_paths=allow_import_paths, source=f"the file {str(path)!r}")


def _literal(node: ast.AST, field: str | None) -> Any:
    """Evaluate the literal subset a genotype repr uses: lists/tuples of strings and ints, and range(a, b)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e, field) for e in node.elts]
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "range" and not node.keywords:
        args = [_literal(a, field) for a in node.args]
        if 1 <= len(args) <= 3 and all(isinstance(a, int) for a in args):
            return list(range(*args))
    raise GenotypeError(f"genotype field {field!r}: unsupported expression {ast.dump(node)[:80]}")
