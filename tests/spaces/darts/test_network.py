"""The network a genotype describes: sanity against the DARTS paper's sizes, variants, drop-path, aux head."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from darts_lightning import EvalNetwork, Genotype, GenotypeError, build_eval_network
from darts_lightning.spaces.edges import FixedEdge
from darts_lightning.spaces.ops import Identity


def _millions(net: EvalNetwork) -> float:
    """Parameters in millions, counting the classifier and excluding the auxiliary head (as the paper does)."""
    aux = {id(p) for p in net.auxiliary_head.parameters()} if net.auxiliary_head is not None else set()
    return sum(p.numel() for p in net.parameters() if id(p) not in aux) / 1e6


@pytest.mark.parametrize(
    "name, channels, layers, classes, variant, expected",
    [
        ("DARTS_V2", 36, 20, 10, "cifar", 3.349),   # the paper's "3.3M"
        ("DARTS_V1", 36, 20, 10, "cifar", 3.169),
        ("DARTS_V2", 48, 14, 1000, "imagenet", 4.719),  # the paper's "4.7M" (mobile setting)
    ],
)
def test_parameter_counts_match_the_darts_paper(name, channels, layers, classes, variant, expected):
    net = build_eval_network(name, channels=channels, layers=layers, num_classes=classes, variant=variant, auxiliary=True)
    assert _millions(net) == pytest.approx(expected, abs=0.01)


def test_imagenet_multiply_adds_at_224():
    net = build_eval_network("DARTS_V2", channels=48, layers=14, num_classes=1000, variant="imagenet", auxiliary=False).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 3, 224, 224))
    assert counter.get_total_flops() / 2 / 1e6 == pytest.approx(530, rel=0.02)


def test_forward_shapes_and_auxiliary_head_in_training_only():
    net = build_eval_network("DARTS_V2", channels=8, layers=6, num_classes=10, auxiliary=True)
    x = torch.randn(2, 3, 32, 32)
    net.train()
    logits, aux = net.forward_with_auxiliary(x)
    assert logits.shape == (2, 10) and aux.shape == (2, 10)
    net.eval()
    logits, aux = net.forward_with_auxiliary(x)
    assert logits.shape == (2, 10) and aux is None
    digits = build_eval_network("DARTS_V2", channels=8, layers=5, num_classes=10, in_channels=1, image_size=8)
    assert digits.train().forward_with_auxiliary(torch.randn(2, 1, 8, 8))[1].shape == (2, 10)


def test_fixed_edges_only_none_free_and_drop_path_skips_identity():
    genotype = Genotype.published("DARTS_V2")
    net = build_eval_network(genotype, channels=8, layers=3, num_classes=10, auxiliary=False)
    edges = [m for m in net.modules() if isinstance(m, FixedEdge)]
    assert len(edges) == 3 * 8
    assert [e.op_name for e in net.cells[0].edges] == [op for op, _ in genotype.normal]
    net.set_drop_path_prob(0.3)
    assert all(e.drop_prob == 0.3 for e in edges)
    # drop-path zeroes whole samples of non-identity edges while training and leaves identities alone
    torch.manual_seed(0)
    conv = next(e for e in edges if e.op_name == "sep_conv_3x3")
    identity = next(e for e in edges if isinstance(e.op, Identity))
    conv.train(), identity.train()
    x = torch.randn(64, 8, 4, 4)
    dropped = (conv(x).flatten(1).abs().sum(1) == 0).float().mean().item()
    assert 0.1 < dropped < 0.5
    assert torch.equal(identity(x), x)
    conv.eval()
    assert (conv(x).flatten(1).abs().sum(1) > 0).all()


def test_published_genotypes_and_errors():
    names = Genotype.published_names()
    assert {"DARTS_V1", "DARTS_V2", "PC_DARTS", "GDAS"} <= set(names)
    for name in names:
        Genotype.published(name).validate(nodes=4)
    assert Genotype.published("DARTS") == Genotype.published("DARTS_V2")
    with pytest.raises(GenotypeError, match="no published genotype named 'DARTS_V3'; known names: .*DARTS_V2"):
        Genotype.published("DARTS_V3")


def test_resolve_reads_names_reprs_and_files(tmp_path):
    genotype = Genotype.published("PC_DARTS")
    path = genotype.save(tmp_path / "genotype.json")
    assert Genotype.resolve("PC_DARTS") == Genotype.resolve(repr(genotype)) == Genotype.resolve(str(path)) == genotype
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(GenotypeError, match="not valid JSON"):
        Genotype.resolve(str(tmp_path / "broken.json"))
    with pytest.raises(GenotypeError, match="cannot read a genotype from 'NOPE'"):
        Genotype.resolve("NOPE")
    bad = repr(genotype).replace("sep_conv_5x5", "sep_conv_9x9")
    with pytest.raises(ValueError, match="unknown op 'sep_conv_9x9'"):
        build_eval_network(bad, channels=8, layers=3, num_classes=10)


def test_variant_and_size_errors():
    with pytest.raises(ValueError, match="variant must be"):
        build_eval_network("DARTS_V2", channels=8, layers=3, num_classes=10, variant="mobile")
    with pytest.raises(ValueError, match="too small"):
        build_eval_network("DARTS_V2", channels=8, layers=8, num_classes=10, image_size=2)


def test_image_size_errors_name_the_input_size_and_the_variants_minimum():
    """8x8 digits through the ImageNet variant: three stride-2 stems and two reduction cells (8 cells) halve
    the image five times, so the network needs 32x32; the CIFAR variant of 8 cells needs 4x4."""
    with pytest.raises(ValueError) as info:
        build_eval_network("DARTS_V2", channels=4, layers=8, num_classes=10, variant="imagenet", image_size=8)
    message = str(info.value)
    assert "input images of 8x8" in message and "at least 32x32" in message and "variant 'imagenet'" in message
    assert "--data.init_args.resize 32" in message and "variant 'cifar'" in message
    with pytest.raises(ValueError, match=r"input images of 2x2 .* at least 4x4 .*variant 'cifar'.*resize 4\)"):
        build_eval_network("DARTS_V2", channels=4, layers=8, num_classes=10, variant="cifar", image_size=2)
