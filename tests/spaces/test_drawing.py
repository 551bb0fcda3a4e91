"""Tests of darts_lightning.spaces.drawing: cell drawings and architecture-weight heatmaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from darts_lightning.spaces.cell import edge_labels
from darts_lightning.spaces.darts.genotype import Genotype
from darts_lightning.spaces.drawing import alpha_heatmap, alpha_heatmaps, draw_cell, draw_genotype, figure_to_array

pytestmark = pytest.mark.real_figures  # these tests check the figures themselves

NORMAL = [
    ("sep_conv_3x3", 0),
    ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 0),
    ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 1),
    ("skip_connect", 0),
    ("skip_connect", 0),
    ("dil_conv_3x3", 2),
]
REDUCE = [
    ("max_pool_3x3", 0),
    ("max_pool_3x3", 1),
    ("skip_connect", 2),
    ("max_pool_3x3", 1),
    ("max_pool_3x3", 0),
    ("skip_connect", 2),
    ("skip_connect", 2),
    ("max_pool_3x3", 1),
]
OPS = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]
NODE_LABELS = ["$c_{k-2}$", "$c_{k-1}$", "0", "1", "2", "3", "$c_{k}$"]  # the cell inputs and output in mathtext
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_draw_genotype_saves_png_with_all_labels(tmp_path):
    genotype = Genotype(NORMAL, [2, 3, 4, 5], REDUCE, [2, 3, 4, 5])
    path = tmp_path / "sub" / "genotype.png"  # parent folder does not exist yet
    fig = draw_genotype(genotype, path)

    assert isinstance(fig, Figure)
    data = path.read_bytes()
    assert len(data) > 0 and data.startswith(PNG_MAGIC)

    ax_normal, ax_reduce = fig.axes
    assert ax_normal.get_title() == "normal cell" and ax_reduce.get_title() == "reduction cell"
    for ax, edges in ((ax_normal, NORMAL), (ax_reduce, REDUCE)):
        texts = _texts(ax)
        for label in NODE_LABELS:
            assert texts.count(label) == 1, label
        # one label per genotype edge, with its op name
        assert sorted(t for t in texts if t not in NODE_LABELS) == sorted(op for op, _ in edges)


def test_draw_cell_into_given_axes_and_counts_arrows():
    fig = Figure()
    ax = fig.add_subplot(1, 1, 1)
    returned = draw_cell(NORMAL, [2, 3, 4, 5], title="cell", ax=ax)
    assert returned is fig
    arrows = [p for p in ax.patches if type(p).__name__ == "FancyArrowPatch"]
    assert len(arrows) == len(NORMAL) + 4  # genotype edges + one per concat state
    assert ax.get_title() == "cell"


def test_drawing_into_the_axes_of_a_subfigure_returns_the_top_figure():
    fig = Figure()
    left, right = fig.subfigures(1, 2)
    assert draw_cell(NORMAL, [2, 3, 4, 5], ax=left.add_subplot(1, 1, 1)) is fig
    assert alpha_heatmap(np.eye(3), ["a", "b", "c"], ["x", "y", "z"], ax=right.add_subplot(1, 1, 1)) is fig
    assert figure_to_array(fig).ndim == 3


def test_draw_cell_own_figure_renders_the_cell():
    """The rendered pixels show the cell: a good share of them is ink, a two-node cell needs less ink than
    a four-node one, and a cell with other ops or other inputs renders differently."""
    image = figure_to_array(draw_cell(NORMAL, [2, 3, 4, 5], title="normal"))
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    ink = (image < 128).any(axis=2).mean()
    assert ink > 0.01
    smaller = figure_to_array(draw_cell(NORMAL[:4], [2, 3], title="normal"))
    assert (smaller < 128).any(axis=2).sum() < (image < 128).any(axis=2).sum()
    other_ops = [("max_pool_3x3", src) for _, src in NORMAL]
    other_inputs = [(op, 0) for op, _ in NORMAL]
    for edges in (other_ops, other_inputs):
        assert not np.array_equal(figure_to_array(draw_cell(edges, [2, 3, 4, 5], title="normal")), image)


def test_the_cell_inputs_and_output_are_rendered_as_mathtext_inside_their_boxes():
    """c_{k-2}, c_{k-1} and c_{k} are drawn with subscripts (mathtext, not the raw TeX source), and each
    rendered label lies inside its node's box."""
    fig = draw_cell(NORMAL, [2, 3, 4, 5], title="normal")
    ax = fig.axes[0]
    labels = {t.get_text(): t for t in ax.texts if "c_" in t.get_text()}
    assert sorted(labels) == ["$c_{k-1}$", "$c_{k-2}$", "$c_{k}$"]
    renderer = fig.canvas.get_renderer()
    boxes = [p for p in ax.patches if type(p).__name__ == "FancyBboxPatch"]  # the two inputs and the output
    assert len(boxes) == 3
    for text in labels.values():
        source = text.get_text()
        assert source.startswith("$") and source.endswith("$")
        # Mathtext renders the subscript, so the label is narrower than its source set as plain text would be.
        plain = ax.text(0, 0, source.strip("$"), fontsize=text.get_fontsize())
        assert text.get_window_extent(renderer).width < plain.get_window_extent(renderer).width
        plain.remove()
        extent = text.get_window_extent(renderer)
        assert any(box.get_window_extent(renderer).contains(*extent.min) and
                   box.get_window_extent(renderer).contains(*extent.max) for box in boxes), source
    assert figure_to_array(fig).ndim == 3


@pytest.mark.parametrize(
    "edges, concat",
    [
        (NORMAL[:3], [2]),  # odd number of edges
        ([("sep_conv_3x3", 2), ("sep_conv_3x3", 0)], [2]),  # node 0 fed from itself
        (NORMAL, [6]),  # concat state that does not exist
    ],
)
def test_draw_cell_rejects_bad_cells(edges, concat):
    with pytest.raises(ValueError):
        draw_cell(edges, concat)


def test_alpha_heatmap_shows_weights():
    torch.manual_seed(0)
    weights = torch.softmax(torch.randn(14, len(OPS)), dim=-1)
    fig = alpha_heatmap(weights, OPS, edge_labels(4), title="normal")
    ax = fig.axes[0]
    (image,) = ax.images
    np.testing.assert_allclose(np.asarray(image.get_array()), weights.numpy(), rtol=1e-6)
    assert [t.get_text() for t in ax.get_xticklabels()] == OPS
    assert len(ax.texts) == weights.numel()
    assert f"{weights[0, 0].item():.2f}" == ax.texts[0].get_text()
    assert len(fig.axes) == 2  # heatmap + colorbar

    array = figure_to_array(fig)
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
    width, height = fig.canvas.get_width_height()
    assert array.shape[:2] == (height, width)


def test_alpha_heatmaps_side_by_side():
    normal = np.random.default_rng(0).random((14, len(OPS)))
    reduce = torch.rand(14, len(OPS))
    fig = alpha_heatmaps(normal, reduce, OPS, edge_labels(4))
    heatmaps = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert [ax.get_title() for ax in heatmaps] == ["normal", "reduce"]
    np.testing.assert_allclose(np.asarray(heatmaps[0].images[0].get_array()), normal)
    np.testing.assert_allclose(np.asarray(heatmaps[1].images[0].get_array()), reduce.numpy(), rtol=1e-6)
    assert figure_to_array(fig).shape[2] == 3


def test_alpha_heatmap_rejects_mismatched_labels():
    with pytest.raises(ValueError):
        alpha_heatmap(torch.zeros(14, 8), OPS[:7], edge_labels(4))
