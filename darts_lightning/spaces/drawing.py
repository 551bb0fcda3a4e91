"""Pictures of a search: the cells of a genotype and heatmaps of the architecture weights.

Everything here is plain matplotlib on the Agg backend: every function builds a
:class:`matplotlib.figure.Figure` with a :class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`
(or draws into an ``ax`` you pass) and never touches ``pyplot``'s global state, so nothing needs to be
closed and it works on headless machines. No graphviz or other system package is needed.

* :func:`draw_cell` draws one cell of a genotype as a DAG, :func:`draw_genotype` both cells.
* :func:`alpha_heatmap` / :func:`alpha_heatmaps` show the (edges × ops) weights of the supernet.
* :func:`figure_to_array` renders a figure to an ``H×W×3`` ``uint8`` array, e.g. for
  ``SummaryWriter.add_image(tag, array, step, dataformats="HWC")``.

Cell layout (:func:`draw_cell`), in data units with an equal aspect ratio::

    c_{k-2}                0           2                       (intermediate nodes zig-zag
                                                     c_{k}      between y = +h and y = -h,
    c_{k-1}                      1           3                  one column per node)

Each genotype edge is a (possibly curved) arrow labelled with its op. The curvature of every arrow is
chosen greedily from a few candidates so that the arrow avoids other nodes and the labels placed
before it, and its label avoids nodes, labels and arrows (see :func:`_choose_curve`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch

from darts_lightning.utils.files import atomic_write_bytes

if TYPE_CHECKING:
    from darts_lightning.spaces.darts.genotype import Genotype

__all__ = [
    "draw_cell",
    "draw_genotype",
    "alpha_heatmap",
    "alpha_heatmaps",
    "figure_to_array",
    "save_png",
]

# ----------------------------------------------------------------------------- style and layout

# Drawn with matplotlib's mathtext, so that the subscripts show as subscripts.
INPUT_LABELS = (r"$c_{k-2}$", r"$c_{k-1}$")
OUTPUT_LABEL = r"$c_{k}$"

_INPUT_COLOR = ("#b7e4c7", "#2d6a4f")  # (face, edge): green
_NODE_COLOR = ("#bde0fe", "#1d4e89")  # blue
_OUTPUT_COLOR = ("#ffd6a5", "#9c4a00")  # orange
_OP_EDGE_COLOR = "#333333"
_CONCAT_EDGE_COLOR = "#9a9a9a"

_COLUMN_DX = 2.8  # horizontal distance between node columns
_ZIGZAG_Y = 0.9  # intermediate nodes alternate between y = +_ZIGZAG_Y and y = -_ZIGZAG_Y
_INPUT_Y = 1.5  # c_{k-2} at y = +_INPUT_Y, c_{k-1} at y = -_INPUT_Y
_NODE_RADIUS = 0.38  # radius of an intermediate node; boxes are about as large
_BOX_HALF = (0.72, 0.34)  # half width / half height of the input and output boxes

_OP_FONTSIZE = 7.0
_NODE_FONTSIZE = 9.0
# Assumed scale of a drawn cell: points per data unit. The figures made here are sized to it, and the
# label sizes used for avoiding overlaps are estimated with it (it is only an estimate when you pass ``ax``).
_POINTS_PER_UNIT = 40.0

# Candidate curvatures (matplotlib's ``arc3`` ``rad``) tried for every arrow, straightest first.
_RADS = (0.0, 0.15, -0.15, 0.3, -0.3, 0.45, -0.45, 0.6, -0.6)


# ----------------------------------------------------------------------------- cell drawing


def _new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A figure with an Agg canvas attached, independent of ``pyplot``."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _node_positions(num_nodes: int) -> list[tuple[float, float]]:
    """Centres of the states ``0 .. num_nodes + 1`` and, last, of the output node ``c_{k}``."""
    positions = [(-0.3, _INPUT_Y), (-0.3, -_INPUT_Y)]
    for i in range(num_nodes):
        positions.append(((i + 1) * _COLUMN_DX, _ZIGZAG_Y if i % 2 == 0 else -_ZIGZAG_Y))
    positions.append(((num_nodes + 1) * _COLUMN_DX + 0.3, 0.0))
    return positions


def _node_box(centre: tuple[float, float], is_circle: bool, grow: float = 0.0) -> tuple[float, float, float, float]:
    """The node as an axis-aligned box ``(cx, cy, half_w, half_h)``, enlarged by ``grow`` on each side."""
    hw, hh = (_NODE_RADIUS, _NODE_RADIUS) if is_circle else _BOX_HALF
    return (centre[0], centre[1], hw + grow, hh + grow)


def _figure_of(ax: Axes) -> Figure:
    """The figure ``ax`` draws into: the top-level one when ``ax`` sits in a subfigure."""
    figure = ax.get_figure()
    if isinstance(figure, SubFigure):
        return figure.figure
    if figure is None:
        raise ValueError("ax belongs to no figure: pass axes of a matplotlib Figure (fig.add_subplot)")
    return figure


def _stack_cells(fig: Figure, axes: Sequence[Axes], title_height: float = 0.4) -> None:
    """Draw cell drawings at one common scale and size ``fig`` to fit them, stacked top to bottom.

    Every axes is sized so that one data unit is :data:`_POINTS_PER_UNIT` points (node labels then fit
    their boxes, op labels have the size assumed when avoiding overlaps); all share the widest x range.
    ``title_height`` (inches) is left above each axes for its title.
    """
    x0 = min(ax.get_xlim()[0] for ax in axes)
    x1 = max(ax.get_xlim()[1] for ax in axes)
    inches_per_unit = _POINTS_PER_UNIT / 72.0
    panels = [(ax.get_ylim()[1] - ax.get_ylim()[0]) * inches_per_unit for ax in axes]
    width = (x1 - x0) * inches_per_unit
    height = sum(panels) + len(axes) * title_height
    fig.set_size_inches(width, height)
    top = height
    for ax, panel in zip(axes, panels):
        ax.set_xlim(x0, x1)
        top -= title_height + panel
        ax.set_position((0.0, top / height, 1.0, panel / height))


def _label_half_size(text: str) -> tuple[float, float]:
    """Estimated half width / half height (data units) of an op label with its white background."""
    width_pt = 0.62 * _OP_FONTSIZE * len(text)  # an average character is ~0.6 em wide
    height_pt = 1.2 * _OP_FONTSIZE
    pad = 0.08
    return 0.5 * width_pt / _POINTS_PER_UNIT + pad, 0.5 * height_pt / _POINTS_PER_UNIT + pad


def _curve_points(a: np.ndarray, b: np.ndarray, rad: float, ts: np.ndarray) -> np.ndarray:
    """Points of the quadratic Bézier that matplotlib's ``arc3,rad=rad`` draws from ``a`` to ``b``.

    matplotlib puts the control point at ``mid + rad * (dy, -dx)``; with an equal aspect ratio this
    holds in data coordinates too. ``ts`` are curve parameters in ``[0, 1]``; returns ``(len(ts), 2)``.
    """
    dx, dy = b - a
    control = (a + b) / 2 + rad * np.array([dy, -dx])
    t = ts[:, None]
    return (1 - t) ** 2 * a + 2 * t * (1 - t) * control + t**2 * b


def _boxes_overlap(p: tuple[float, float, float, float], q: tuple[float, float, float, float]) -> bool:
    return abs(p[0] - q[0]) < p[2] + q[2] and abs(p[1] - q[1]) < p[3] + q[3]


def _inside_box(points: np.ndarray, box: tuple[float, float, float, float]) -> int:
    """How many of ``points`` fall inside ``box``."""
    cx, cy, hw, hh = box
    return int(np.sum((np.abs(points[:, 0] - cx) < hw) & (np.abs(points[:, 1] - cy) < hh)))


def _choose_curve(
    src: int,
    dst: int,
    positions: list[tuple[float, float]],
    node_boxes: list[tuple[float, float, float, float]],
    label: str | None,
    placed_labels: list[tuple[float, float, float, float]],
    placed_curves: list[np.ndarray],
) -> tuple[float, tuple[float, float, float, float] | None, np.ndarray]:
    """Greedily pick the curvature of the arrow ``src -> dst`` (indices into ``positions``).

    ``node_boxes`` are the nodes as boxes ``(cx, cy, half_w, half_h)`` (see :func:`_node_box`). Every
    candidate in :data:`_RADS` gets a penalty score; the lowest wins (ties: the straighter one):

    * the arrow passing close to a node other than its two ends (heavy),
    * the arrow running through a label placed earlier,
    * its own label (at the middle of the curve) touching a node, an earlier label (heavy) or an
      earlier arrow,
    * how far the curve bulges (mild: prefer straight arrows).

    Returns ``(rad, label_box or None, sampled curve points)``.
    """
    a, b = np.asarray(positions[src]), np.asarray(positions[dst])
    ts = np.linspace(0.08, 0.92, 25)
    best: tuple[float, float, tuple[float, float, float, float] | None, np.ndarray] | None = None
    for rad in _RADS:
        points = _curve_points(a, b, rad, ts)
        cost = 0.0
        for k, (cx, cy, hw, hh) in enumerate(node_boxes):
            if k not in (src, dst):
                cost += 10.0 * _inside_box(points, (cx, cy, hw + 0.3, hh + 0.3))
        for placed in placed_labels:
            cost += 3.0 * _inside_box(points, placed)
        box = None
        if label is not None:
            middle = _curve_points(a, b, rad, np.array([0.5]))[0]
            box = (float(middle[0]), float(middle[1]), *_label_half_size(label))
            cost += sum(30.0 for node in node_boxes if _boxes_overlap(box, node))
            cost += sum(30.0 for other in placed_labels if _boxes_overlap(box, other))
            cost += sum(2.0 * _inside_box(curve, box) for curve in placed_curves)
        bulge = 0.5 * abs(rad) * float(np.hypot(*(b - a)))
        cost += 1.5 * bulge
        if best is None or cost < best[0]:
            best = (cost, rad, box, points)
    assert best is not None
    return best[1], best[2], best[3]


def _node_patch(kind: str, centre: tuple[float, float]) -> Patch:
    """The shape of a node: a rounded box for inputs/output, a circle for intermediate nodes."""
    if kind == "node":
        return Circle(centre, _NODE_RADIUS, facecolor=_NODE_COLOR[0], edgecolor=_NODE_COLOR[1], linewidth=1.3, zorder=3)
    face, edge = _INPUT_COLOR if kind == "input" else _OUTPUT_COLOR
    hw, hh = _BOX_HALF
    return FancyBboxPatch(
        (centre[0] - hw, centre[1] - hh),
        2 * hw,
        2 * hh,
        boxstyle="round,pad=0,rounding_size=0.15",
        facecolor=face,
        edgecolor=edge,
        linewidth=1.3,
        zorder=3,
    )


def draw_cell(
    edges: Sequence[tuple[str, int]],
    concat: Sequence[int],
    title: str = "",
    ax: Axes | None = None,
) -> Figure:
    """Draw one DARTS cell as a directed acyclic graph.

    Args:
        edges: the genotype format: two ``(op_name, input_state)`` pairs per intermediate node, in node
            order. States 0 and 1 are the cell inputs (drawn :math:`c_{k-2}`, :math:`c_{k-1}`), intermediate node
            ``i`` is state ``i + 2`` (drawn ``"i"``).
        concat: the states concatenated into the cell output :math:`c_{k}`; each gets an unlabelled arrow to it.
        title: axes title.
        ax: draw into these axes (their aspect is set to equal and their frame hidden) instead of a new
            figure.

    Returns:
        The figure drawn into (``ax``'s figure when ``ax`` is given).

    Raises:
        ValueError: an odd number of edges, or an edge/concat state that does not exist before its node.
    """
    edges = [(str(op), int(src)) for op, src in edges]
    concat = [int(s) for s in concat]
    if len(edges) % 2:
        raise ValueError(f"a cell has two edges per node, got {len(edges)} edges")
    num_nodes = len(edges) // 2
    for k, (op, src) in enumerate(edges):
        if not 0 <= src < k // 2 + 2:
            raise ValueError(f"edge {k} ({op!r}, {src}) feeds state {k // 2 + 2} from a state that does not precede it")
    for state in concat:
        if not 0 <= state < num_nodes + 2:
            raise ValueError(f"concat state {state} is not a state of a cell with {num_nodes} nodes")

    own_figure = ax is None
    if ax is None:
        fig = _new_figure(8.0, 3.0)  # resized to the drawing at the end
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    else:
        fig = _figure_of(ax)

    positions = _node_positions(num_nodes)  # states 0 .. num_nodes + 1, then the output node
    output = len(positions) - 1
    kinds = ["input", "input"] + ["node"] * num_nodes + ["output"]
    names = list(INPUT_LABELS) + [str(i) for i in range(num_nodes)] + [OUTPUT_LABEL]
    patches = [_node_patch(kind, centre) for kind, centre in zip(kinds, positions)]
    # For the overlap checks: every node as a box, a little larger than drawn.
    node_boxes = [_node_box(centre, kind == "node", grow=0.08) for kind, centre in zip(kinds, positions)]
    for patch, centre, name in zip(patches, positions, names):
        ax.add_patch(patch)
        ax.text(*centre, name, ha="center", va="center", fontsize=_NODE_FONTSIZE, fontweight="bold", zorder=4)

    # Arrows: the labelled genotype edges first, then the unlabelled concat edges into the output.
    arrows: list[tuple[int, int, str | None]] = [(src, k // 2 + 2, op) for k, (op, src) in enumerate(edges)]
    arrows += [(state, output, None) for state in concat]
    placed_labels: list[tuple[float, float, float, float]] = []
    placed_curves: list[np.ndarray] = []
    for src, dst, label in arrows:
        rad, box, points = _choose_curve(src, dst, positions, node_boxes, label, placed_labels, placed_curves)
        ax.add_patch(
            FancyArrowPatch(
                positions[src],
                positions[dst],
                connectionstyle=f"arc3,rad={rad}",
                arrowstyle="-|>",
                mutation_scale=11,
                linewidth=1.2 if label is not None else 1.0,
                linestyle="-" if label is not None else (0, (4, 2)),
                color=_OP_EDGE_COLOR if label is not None else _CONCAT_EDGE_COLOR,
                patchA=patches[src],  # clip the arrow at the node outlines
                patchB=patches[dst],
                zorder=1,
            )
        )
        placed_curves.append(points)
        if label is not None and box is not None:
            placed_labels.append(box)
            ax.text(
                box[0],
                box[1],
                label,
                ha="center",
                va="center",
                fontsize=_OP_FONTSIZE,
                zorder=2,
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.85),
            )

    # Limits: everything drawn plus a margin; equal aspect so circles stay round.
    boxes = node_boxes + placed_labels
    xs = [b[0] - b[2] for b in boxes] + [b[0] + b[2] for b in boxes] + [p[0] for c in placed_curves for p in c]
    ys = [b[1] - b[3] for b in boxes] + [b[1] + b[3] for b in boxes] + [p[1] for c in placed_curves for p in c]
    margin = 0.4
    ax.set_xlim(min(xs) - margin, max(xs) + margin)
    ax.set_ylim(min(ys) - margin, max(ys) + margin)
    ax.set_aspect("equal")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=11)
    if own_figure:
        _stack_cells(fig, [ax], title_height=0.4 if title else 0.0)
    return fig


def draw_genotype(genotype: Genotype, path: str | Path | None = None, dpi: int = 120) -> Figure:
    """Draw the normal and the reduction cell of a genotype, one above the other.

    ``genotype`` is duck-typed: anything with ``normal``, ``normal_concat``, ``reduce`` and
    ``reduce_concat`` in the DARTS format (see :func:`draw_cell`). If ``path`` is given the figure is
    also saved there as a PNG (parent folders are created). Returns the figure.
    """
    fig = _new_figure(8.0, 6.0, dpi=dpi)  # resized to the drawings by _stack_cells
    ax_normal = fig.add_axes((0.0, 0.5, 1.0, 0.5))
    ax_reduce = fig.add_axes((0.0, 0.0, 1.0, 0.5))
    draw_cell(genotype.normal, genotype.normal_concat, title="normal cell", ax=ax_normal)
    draw_cell(genotype.reduce, genotype.reduce_concat, title="reduction cell", ax=ax_reduce)
    _stack_cells(fig, [ax_normal, ax_reduce])
    if path is not None:
        save_png(fig, path)
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Save ``fig`` as a PNG at its own resolution on white, creating the parent folders. The PNG is
    rendered in memory and written atomically: a failed write keeps the previous file."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, facecolor="white")
    return atomic_write_bytes(path, buffer.getbuffer())


# ----------------------------------------------------------------------------- architecture weights


def draw_nb201_cell(
    ops: Sequence[str], path: str | Path | None = None, title: str = "NAS-Bench-201 cell", dpi: int = 120
) -> Figure:
    """A NAS-Bench-201 cell: states 0 (input) to 3 (output) on a line, an arc labelled with its op for every
    edge ``j → i`` (edge order ``0→1, 0→2, 1→2, 0→3, 1→3, 2→3``); ``none`` edges are left out."""
    fig = _new_figure(7.0, 3.6, dpi=dpi)
    ax = fig.add_subplot(1, 1, 1)
    positions = [(2.0 * i, 0.0) for i in range(4)]
    edges = [(j, i) for i in range(1, 4) for j in range(i)]
    if len(ops) != len(edges):
        raise ValueError(f"a NAS-Bench-201 cell has {len(edges)} edges, got {len(ops)} ops")
    for (j, i), op in zip(edges, ops):
        if op == "none":
            continue
        rad = -0.25 * (i - j) if (i - j) > 1 else 0.0
        arrow = FancyArrowPatch(positions[j], positions[i], connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
                                mutation_scale=12, lw=1.2, color="#333333", shrinkA=14, shrinkB=14)
        ax.add_patch(arrow)
        mid = _curve_points(np.array(positions[j]), np.array(positions[i]), rad, np.array([0.5]))[0]
        ax.text(mid[0], mid[1], op, ha="center", va="center", fontsize=7,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none"})
    for k, (x, y) in enumerate(positions):
        ax.add_patch(Circle((x, y), 0.28, fc="#cfe2f3" if 0 < k < 3 else "#d9ead3", ec="#333333", zorder=3))
        ax.text(x, y, str(k), ha="center", va="center", fontsize=9, fontweight="bold", zorder=4)
    ax.set_xlim(-0.6, 6.6)
    ax.set_ylim(-0.6, 2.6)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    if path is not None:
        save_png(fig, path)
    return fig


def _as_matrix(weights: torch.Tensor | np.ndarray) -> np.ndarray:
    """A 2-D float numpy copy of a tensor or array."""
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().float().cpu().numpy()
    matrix = np.asarray(weights, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-D (edges x ops) matrix, got shape {matrix.shape}")
    return matrix


def alpha_heatmap(
    weights: torch.Tensor | np.ndarray,
    op_names: Sequence[str],
    edge_labels: Sequence[str],
    title: str = "",
    ax: Axes | None = None,
) -> Figure:
    """Heatmap of an (edges × ops) weight matrix, values written in the cells, with a colorbar.

    ``weights`` is shown as given: pass ``softmax(alpha, dim=-1)`` to see the mixing weights. Rows are
    labelled by ``edge_labels`` (e.g. :func:`darts_lightning.spaces.cell.edge_labels`), columns by ``op_names``. Draws into
    ``ax`` when given; returns the figure.
    """
    matrix = _as_matrix(weights)
    rows, cols = matrix.shape
    if rows != len(edge_labels) or cols != len(op_names):
        raise ValueError(
            f"weights have shape {matrix.shape}, but there are {len(edge_labels)} edge labels and {len(op_names)} op names"
        )
    if ax is None:
        fig = _new_figure(2.5 + 0.75 * cols, 1.6 + 0.32 * rows)
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = _figure_of(ax)

    image = ax.imshow(matrix, cmap="viridis", aspect="auto", interpolation="nearest")
    ax.set_xticks(range(cols), labels=list(op_names), rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(rows), labels=list(edge_labels), fontsize=8)
    # Annotations: dark text on the bright end of the colormap, white text on the dark end.
    low, high = float(np.nanmin(matrix)), float(np.nanmax(matrix))
    threshold = (low + high) / 2
    for r in range(rows):
        for c in range(cols):
            value = matrix[r, c]
            ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=6,
                    color="black" if value > threshold else "white")
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def alpha_heatmaps(
    normal: torch.Tensor | np.ndarray,
    reduce: torch.Tensor | np.ndarray,
    op_names: Sequence[str],
    edge_labels: Sequence[str],
) -> Figure:
    """The normal and reduce weight heatmaps side by side (titled ``"normal"`` and ``"reduce"``)."""
    rows, cols = len(edge_labels), len(op_names)
    fig = _new_figure(2 * (2.5 + 0.75 * cols), 1.6 + 0.32 * rows)
    ax_normal, ax_reduce = fig.subplots(1, 2)
    alpha_heatmap(normal, op_names, edge_labels, title="normal", ax=ax_normal)
    alpha_heatmap(reduce, op_names, edge_labels, title="reduce", ax=ax_reduce)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- export


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render ``fig`` with Agg and return its pixels as an ``H×W×3`` ``uint8`` RGB array.

    For TensorBoard: ``writer.add_image(tag, figure_to_array(fig), step, dataformats="HWC")``.
    """
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3], dtype=np.uint8)
