"""Tests of darts_lightning.spaces.darts.genotype: derivation from α, text and JSON formats, validation."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

from darts_lightning.spaces.darts.genotype import SCHEMA_VERSION, Genotype, GenotypeError
from darts_lightning.spaces.darts.supernet import SearchNetwork
from darts_lightning.spaces.ops import DARTS_OPS

OPS = list(DARTS_OPS)
NONE, MAX, AVG, SKIP, SEP3, SEP5, DIL3, DIL5 = range(8)
assert OPS == ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
               "dil_conv_3x3", "dil_conv_5x5"]
INF = float("inf")

DARTS_V2_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))"
)
DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5],
)


# --------------------------------------------------------------------------- from_alphas


def hand_made_alphas():
    """α for 4 nodes (rows: node 0 = 0..1, node 1 = 2..4, node 2 = 5..8, node 3 = 9..13; row = source state).

    Normal cell: logits 0 except the entries set below, so a row with one entry s has non-none
    strength e^s / (e^s + 7) (s=1: 0.39, s=2: 0.51, s=3: 0.74, s=5: 0.95) and an all-zero row 1/8.

    * node 0: row 0 has `none`=10 and sep_conv_5x5=4 (none wins the softmax; non-none strength 0.002),
      row 1 has sep_conv_3x3=1 (0.39). Both edges are kept (a node has k=2 inputs), stronger first:
      [(sep_conv_3x3, 1), (sep_conv_5x5, 0)] -- `none` is never the op of a kept edge.
    * node 1: row 2 dil_conv_3x3=2 (0.51); row 3 none=10, max_pool=9 (0.27 without `none`, but `none`
      alone has 0.73 and would win if counted); row 4 skip_connect=3 (0.74):
      [(skip_connect, 2), (dil_conv_3x3, 0)].
    * node 2: row 5 all zero (0.125, ties broken to the first non-none op: max_pool), row 6 avg_pool=1
      (0.39), row 7 all zero, row 8 sep_conv_3x3=5 (0.95): [(sep_conv_3x3, 3), (avg_pool_3x3, 1)].
    * node 3: row 9 dil_conv_5x5=2 (0.51); row 10 exactly one-hot on `none` (strength 0); row 11 all zero;
      row 12 none=100; row 13 max_pool=2, sep_conv_5x5=2.5 (e^2.5 / (e^2.5 + e^2 + 6) = 0.48):
      [(dil_conv_5x5, 0), (sep_conv_5x5, 4)].

    Reduce cell: every row exactly one-hot (-inf elsewhere), so every non-none edge has strength 1 and
    ties go to the lower source; rows one-hot on `none` have strength 0.
    """
    normal = torch.zeros(14, 8)
    normal[0, NONE], normal[0, SEP5] = 10, 4
    normal[1, SEP3] = 1
    normal[2, DIL3] = 2
    normal[3, NONE], normal[3, MAX] = 10, 9
    normal[4, SKIP] = 3
    normal[6, AVG] = 1
    normal[8, SEP3] = 5
    normal[9, DIL5] = 2
    normal[10] = -INF
    normal[10, NONE] = 0
    normal[12, NONE] = 100
    normal[13, MAX], normal[13, SEP5] = 2, 2.5
    expected_normal = [
        ("sep_conv_3x3", 1), ("sep_conv_5x5", 0),
        ("skip_connect", 2), ("dil_conv_3x3", 0),
        ("sep_conv_3x3", 3), ("avg_pool_3x3", 1),
        ("dil_conv_5x5", 0), ("sep_conv_5x5", 4),
    ]

    reduce_rows = [MAX, MAX,  # node 0
                   NONE, MAX, SKIP,  # node 1
                   NONE, NONE, SKIP, AVG,  # node 2
                   SEP3, NONE, NONE, NONE, DIL3]  # node 3
    reduce = torch.full((14, 8), -INF)
    for row, col in enumerate(reduce_rows):
        reduce[row, col] = 0.0
    expected_reduce = [
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),
        ("max_pool_3x3", 1), ("skip_connect", 2),
        ("skip_connect", 2), ("avg_pool_3x3", 3),
        ("sep_conv_3x3", 0), ("dil_conv_3x3", 4),
    ]
    return normal, reduce, expected_normal, expected_reduce


def test_from_alphas_hand_made():
    normal, reduce, expected_normal, expected_reduce = hand_made_alphas()
    g = Genotype.from_alphas(normal, reduce, OPS)
    expected = Genotype(expected_normal, [2, 3, 4, 5], expected_reduce, [2, 3, 4, 5])
    assert g == expected
    assert all(op != "none" for op, _ in g.normal + g.reduce)


def test_from_alphas_multiplier_sets_concat():
    normal, reduce, expected_normal, expected_reduce = hand_made_alphas()
    g = Genotype.from_alphas(normal, reduce, OPS, multiplier=2)
    assert g.normal_concat == (4, 5) and g.reduce_concat == (4, 5)
    assert g.normal == tuple(expected_normal)


def test_from_alphas_already_normalized():
    normal, reduce, expected_normal, expected_reduce = hand_made_alphas()
    g = Genotype.from_alphas(torch.softmax(normal, -1), torch.softmax(reduce, -1), OPS, already_normalized=True)
    assert g.normal == tuple(expected_normal) and g.reduce == tuple(expected_reduce)


def test_search_network_genotype_uses_from_alphas():
    normal, reduce, expected_normal, expected_reduce = hand_made_alphas()
    net = SearchNetwork(1, 10, channels=2, layers=1)
    with torch.no_grad():
        net.alpha_normal.copy_(normal)
        net.alpha_reduce.copy_(reduce)
    assert net.genotype() == Genotype(expected_normal, [2, 3, 4, 5], expected_reduce, [2, 3, 4, 5])


def test_from_alphas_rejects_wrong_shape_and_all_zero_ops():
    with pytest.raises(GenotypeError, match="shape"):
        Genotype.from_alphas(torch.zeros(13, 8), torch.zeros(14, 8), OPS)
    with pytest.raises(GenotypeError, match="zero op"):
        Genotype.from_alphas(torch.zeros(14, 1), torch.zeros(14, 1), ["none"])


# --------------------------------------------------------------------------- text format


def test_repr_round_trip():
    normal, reduce, _, _ = hand_made_alphas()
    for g in (DARTS_V2, Genotype.from_alphas(normal, reduce, OPS, multiplier=3)):
        text = repr(g)
        assert text.startswith("Genotype(normal=[(")
        assert Genotype.parse(text) == g
        assert str(g) == text


def test_parse_published_darts_v2():
    g = Genotype.parse(DARTS_V2_TEXT)
    assert g == DARTS_V2
    assert g.reduce_concat == (2, 3, 4, 5)
    assert g.normal[7] == ("dil_conv_3x3", 2)
    assert g.nodes == 4


def test_parse_tolerates_tuples_and_whitespace():
    text = "\n  " + DARTS_V2_TEXT.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=(2, 3, 4, 5)") + "  \n"
    assert Genotype.parse(text) == DARTS_V2


def _with(field: str, value: str) -> str:
    """The DARTS_V2 text with one field's value replaced."""
    fields = {
        "normal": repr([list(e) for e in DARTS_V2.normal]),
        "normal_concat": "[2, 3, 4, 5]",
        "reduce": repr([list(e) for e in DARTS_V2.reduce]),
        "reduce_concat": "range(2, 6)",
    }
    fields[field] = value
    return "Genotype(" + ", ".join(f"{k}={v}" for k, v in fields.items()) + ")"


def test_parse_helper_builds_valid_text():
    assert Genotype.parse(_with("normal_concat", "[2, 3, 4, 5]")) == DARTS_V2


@pytest.mark.parametrize(
    "field,value",
    [
        ("normal", "__import__('os').system('echo hi')"),
        ("normal_concat", "__import__('os').getcwd()"),
        ("reduce", "[(open('x').read(), 0)]"),
        ("reduce_concat", "list(range(2, 6))"),
        ("normal_concat", "[2, 3] + [4, 5]"),
        ("normal", "[(x, 0) for x in 'ab']"),
        ("normal_concat", "[True, 3]"),
    ],
)
def test_parse_never_evaluates_code(field, value, monkeypatch):
    import os

    def forbidden(*args, **kwargs):
        raise AssertionError("parse executed code")

    monkeypatch.setattr(os, "system", forbidden)
    with pytest.raises(GenotypeError):
        Genotype.parse(_with(field, value))


@pytest.mark.parametrize(
    "text",
    [
        "Genotype(normal=[('sep_conv_3x3', 0)",  # syntax error
        "",
        # missing reduce_concat
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=[2], "
        "reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)])",
        DARTS_V2_TEXT.replace("Genotype(", "Genome("),  # wrong call name
        DARTS_V2_TEXT.replace("Genotype(", "print("),
        DARTS_V2_TEXT[:-1] + ", extra=[1])",  # unexpected field
        "[('sep_conv_3x3', 0)]",  # not a call
        "Genotype(**fields)",  # unpacked fields
        # positional
        "Genotype([('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], [2], [('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], [2])",
    ],
)
def test_parse_rejects_malformed_text(text):
    with pytest.raises(GenotypeError):
        Genotype.parse(text)


def test_parse_missing_field_is_named():
    with pytest.raises(GenotypeError, match="reduce_concat"):
        Genotype.parse(DARTS_V2_TEXT.replace(", reduce_concat=range(2, 6)", ""))


def test_parse_unknown_op_lists_valid_ops():
    with pytest.raises(ValueError) as info:
        Genotype.parse(DARTS_V2_TEXT.replace("dil_conv_3x3", "dil_conv_9x9"))
    message = str(info.value)
    assert "dil_conv_9x9" in message
    for name in DARTS_OPS:
        assert name in message


def test_parse_rejects_edge_from_later_state():
    with pytest.raises(GenotypeError, match="edge 1"):
        Genotype.parse(
            DARTS_V2_TEXT.replace("('sep_conv_3x3', 1), ('sep_conv_3x3', 0)", "('sep_conv_3x3', 2), ('sep_conv_3x3', 0)", 1)
        )


# --------------------------------------------------------------------------- JSON


def test_json_round_trip(tmp_path):
    path = DARTS_V2.save(tmp_path / "sub" / "genotype.json")
    assert path.is_file()
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["format"] == "darts_lightning.spaces.darts.genotype"
    assert Genotype.parse(data["repr"]) == DARTS_V2
    assert Genotype.load(path) == DARTS_V2
    assert Genotype.load(str(path)) == DARTS_V2


def _write(tmp_path, data):
    path = tmp_path / "g.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("schema_version", [0, 2, "1", None])
def test_json_wrong_schema_version(tmp_path, schema_version):
    data = DARTS_V2.to_dict()
    data["schema_version"] = schema_version
    with pytest.raises(GenotypeError, match="schema_version"):
        Genotype.load(_write(tmp_path, data))


@pytest.mark.parametrize("fmt", ["something_else", None])
def test_json_wrong_format(tmp_path, fmt):
    data = DARTS_V2.to_dict()
    data["format"] = fmt
    with pytest.raises(GenotypeError, match="format"):
        Genotype.load(_write(tmp_path, data))


def test_json_not_an_object_or_not_json(tmp_path):
    with pytest.raises(GenotypeError):
        Genotype.load(_write(tmp_path, [1, 2, 3]))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GenotypeError, match="JSON"):
        Genotype.load(bad)
    with pytest.raises(FileNotFoundError):
        Genotype.load(tmp_path / "missing.json")


def test_json_missing_field(tmp_path):
    data = DARTS_V2.to_dict()
    del data["reduce"]
    with pytest.raises(GenotypeError, match="reduce"):
        Genotype.load(_write(tmp_path, data))


def test_json_edge_from_later_state_is_named(tmp_path):
    data = DARTS_V2.to_dict()
    data["normal"][0] = ["sep_conv_3x3", 3]  # node 0 (state 2) may only take states 0..1
    with pytest.raises(GenotypeError) as info:
        Genotype.load(_write(tmp_path, data))
    message = str(info.value)
    assert "edge 0" in message and "'sep_conv_3x3', 3" in message and "'normal'" in message


def test_validate_edge_count():
    g = Genotype(DARTS_V2.normal[:7], [2, 3, 4, 5], DARTS_V2.reduce, [2, 3, 4, 5])
    with pytest.raises(GenotypeError, match="'normal' has 7 edges"):
        g.validate(nodes=4)
    with pytest.raises(GenotypeError, match="7 edges"):
        g.validate()
    assert DARTS_V2.validate(nodes=4) is DARTS_V2
    with pytest.raises(GenotypeError, match="'reduce' has 8 edges"):
        Genotype(DARTS_V2.normal[:6], [2, 3, 4], DARTS_V2.reduce, [2, 3, 4]).validate()


def test_validate_concat_range():
    with pytest.raises(GenotypeError, match="normal_concat"):
        Genotype(DARTS_V2.normal, [2, 6], DARTS_V2.reduce, [2]).validate()
    with pytest.raises(GenotypeError, match="reduce_concat"):
        Genotype(DARTS_V2.normal, [2], DARTS_V2.reduce, []).validate()


@pytest.mark.parametrize("edges", [[("sep_conv_3x3", -1)], [("", 0)], 5, [("sep_conv_3x3",)], [("a", "b")]])
def test_constructor_rejects_invalid_edges(edges):
    with pytest.raises(GenotypeError):
        Genotype(edges, [2], DARTS_V2.reduce[:2], [2])


# --------------------------------------------------------------------------- value semantics


def test_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DARTS_V2.normal = ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        DARTS_V2.reduce_concat = (2,)
    assert isinstance(DARTS_V2.normal, tuple) and isinstance(DARTS_V2.normal[0], tuple)


def test_hashable_and_equal_by_value():
    a = Genotype.parse(DARTS_V2_TEXT)
    b = Genotype([list(e) for e in DARTS_V2.normal], range(2, 6), list(DARTS_V2.reduce), (2, 3, 4, 5))
    assert a == b and a is not b
    assert hash(a) == hash(b)
    assert len({a, b, DARTS_V2}) == 1
    other = Genotype(DARTS_V2.normal, [2, 3, 4, 5], DARTS_V2.reduce, [4, 5])
    assert other != a
    assert len({a, other}) == 2


def test_import_path_ops_in_a_genotype_need_explicit_consent():
    text = (
        "Genotype(normal=[('tests.custom_ops:conv_1x1', 0), ('skip_connect', 1)], normal_concat=[2], "
        "reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])"
    )
    with pytest.raises(GenotypeError, match="import path"):
        Genotype.parse(text)
    assert Genotype.parse(text, allow_import_paths=True).normal[0][0] == "tests.custom_ops:conv_1x1"


@pytest.mark.parametrize("concat", ["5", "['a']", "[True]"])
def test_malformed_concat_is_a_genotype_error(concat):
    with pytest.raises(GenotypeError, match="normal_concat"):
        Genotype.parse(
            f"Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal_concat={concat}, "
            "reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])"
        )


@pytest.mark.parametrize("edge", ["('skip_connect', 1.5)", "('skip_connect', True)", "(3, 0)", "('skip_connect',)"])
def test_malformed_edges_are_genotype_errors(edge):
    with pytest.raises(GenotypeError, match="invalid edge|unsupported expression"):
        Genotype.parse(
            f"Genotype(normal=[{edge}, ('skip_connect', 1)], normal_concat=[2], "
            "reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])"
        )


# ---------------------------------------------------------------------- random genotypes


def test_random_genotype_validates_and_fits_the_darts_cell_space():
    import random

    genotype = Genotype.random(random.Random(0))
    assert genotype.validate(nodes=4) is genotype
    assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)
    assert Genotype.parse(repr(genotype)) == genotype


def test_random_genotype_is_reproducible_per_seed_and_differs_across_seeds():
    import random

    assert Genotype.random(random.Random(7)) == Genotype.random(random.Random(7))
    assert len({Genotype.random(random.Random(seed)) for seed in range(20)}) == 20


def test_random_genotype_never_holds_none_and_each_node_has_distinct_inputs():
    import random

    for seed in range(200):
        genotype = Genotype.random(random.Random(seed))
        for cell in (genotype.normal, genotype.reduce):
            assert all(op != "none" and op in OPS for op, _ in cell)
            for node in range(4):
                (_, a), (_, b) = cell[2 * node : 2 * node + 2]
                assert a != b and max(a, b) <= node + 1


def test_random_genotype_takes_its_ops_and_node_count():
    import random

    genotype = Genotype.random(random.Random(3), op_names=["skip_connect", "sep_conv_3x3"], nodes=2)
    assert genotype.nodes == 2 and genotype.normal_concat == (2, 3)
    assert {op for op, _ in genotype.normal + genotype.reduce} <= {"skip_connect", "sep_conv_3x3"}
    with pytest.raises(GenotypeError, match="empty"):
        Genotype.random(random.Random(0), op_names=[])


def test_random_genotype_covers_every_input_and_op():
    """Uniform sampling reaches every state each node may take and every op."""
    import random

    generator = random.Random(0)
    inputs = {node: set() for node in range(4)}
    ops = set()
    for _ in range(100):
        genotype = Genotype.random(generator)
        for k, (op, src) in enumerate(genotype.normal + genotype.reduce):
            inputs[(k % 8) // 2].add(src)
            ops.add(op)
    assert all(inputs[node] == set(range(node + 2)) for node in range(4))
    assert ops == set(OPS) - {"none"}


def test_gdas_rule_keeps_the_strongest_op_input_pairs_even_from_one_input():
    from darts_lightning import build_eval_network
    from darts_lightning.spaces.ops import DARTS_OPS

    ops = list(DARTS_OPS)
    weights = torch.full((14, 8), 0.01)
    # node 0 (edges from inputs 0 and 1): input 0 has the two strongest ops, input 1 the third
    weights[0, ops.index("sep_conv_3x3")] = 0.9
    weights[0, ops.index("skip_connect")] = 0.8
    weights[1, ops.index("max_pool_3x3")] = 0.7
    weights[0, ops.index("none")] = 0.95  # never chosen by either rule
    darts = Genotype.from_alphas(weights, weights, ops, already_normalized=True)
    gdas = Genotype.from_alphas(weights, weights, ops, already_normalized=True, rule="gdas")
    assert darts.normal[:2] == (("sep_conv_3x3", 0), ("max_pool_3x3", 1))
    assert gdas.normal[:2] == (("sep_conv_3x3", 0), ("skip_connect", 0))
    network = build_eval_network(gdas, channels=4, layers=3, num_classes=10, in_channels=1, image_size=8, auxiliary=False)
    assert network(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(GenotypeError, match="valid rules are: darts, gdas"):
        Genotype.from_alphas(weights, weights, ops, rule="pcdarts")


CANARY_MODULE = '''
"""Writes a marker file when imported: a test's proof that the module was (or was not) imported."""
from pathlib import Path

Path(__file__).with_suffix(".imported").write_text("imported")

from darts_lightning.spaces.ops import ReLUConvBN


def op(channels, stride, affine):
    return ReLUConvBN(channels, channels, 1, stride, 0, affine=affine)
'''


def write_canary_genotype(directory: Path) -> tuple[Path, str, Path]:
    """A ``genotype.json`` (DARTS_V2 with its first op replaced by ``<canary module>:op``) and a module in
    ``directory`` that writes a marker file when imported. Returns (genotype file, op, marker file); put
    ``directory`` on ``sys.path`` to make the module importable."""
    import uuid

    module = f"canary_{uuid.uuid4().hex}"
    (directory / f"{module}.py").write_text(CANARY_MODULE)
    op = f"{module}:op"
    genotype = Genotype(((op, 0),) + DARTS_V2.normal[1:], DARTS_V2.normal_concat, DARTS_V2.reduce, DARTS_V2.reduce_concat)
    return genotype.save(directory / "genotype.json"), op, directory / f"{module}.imported"


def test_a_genotype_file_naming_an_import_path_is_refused_before_anything_is_imported(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    path, op, marker = write_canary_genotype(tmp_path)
    for read in (lambda: Genotype.load(path), lambda: Genotype.resolve(str(path))):
        with pytest.raises(GenotypeError) as error:
            read()
        message = str(error.value)
        assert op in message and str(path) in message and "allow_import_paths" in message and "\n" not in message
    assert not marker.exists() and op.split(":")[0] not in sys.modules
    # The same file with consent: resolving the op imports the module (so the check above is meaningful).
    assert Genotype.load(path, allow_import_paths=True).normal[0] == (op, 0)
    assert marker.exists()
