"""NSGA-II's rankings on hand-made points, the Pareto front of a history, the hypervolume, and the
``pareto_evolution`` searcher's selection, survival and state."""

from __future__ import annotations

import math
import random

import pytest

from darts_lightning.discrete.pareto import (
    ParetoEvolution,
    crowded_ranking,
    crowding_distance,
    dominates,
    draw_pareto_front,
    hypervolume_2d,
    non_dominated_sort,
    pareto_front,
)
from darts_lightning.discrete.searchers import build_searcher, list_searchers
from darts_lightning.spaces import NB201Space

#: Objectives to minimise: 0, 1, 2 and 6 are not dominated (6 repeats 1); 3 is dominated by 1 only; 4 by 1, 2
#: and 3; 5 by all of them.
POINTS = [(1.0, 5.0), (2.0, 3.0), (3.0, 1.0), (2.0, 4.0), (4.0, 4.0), (5.0, 5.0), (2.0, 3.0)]


def test_domination_and_the_fast_non_dominated_sort():
    assert dominates((1, 2), (1, 3)) and not dominates((1, 3), (1, 3)) and not dominates((1, 3), (2, 2))
    assert non_dominated_sort(POINTS) == [[0, 1, 2, 6], [3], [4], [5]]
    assert non_dominated_sort([]) == []
    # Every point of a front is dominated by a point of the front before, and by none of its own front.
    fronts = non_dominated_sort(POINTS)
    for earlier, later in zip(fronts, fronts[1:]):
        assert all(any(dominates(POINTS[p], POINTS[q]) for p in earlier) for q in later)
    assert all(not dominates(POINTS[p], POINTS[q]) for front in fronts for p in front for q in front)


def test_crowding_distance_by_hand():
    points = [(1.0, 5.0), (1.5, 4.0), (2.0, 3.0), (3.0, 1.0)]
    # Objective 0 (range 2): point 1 gets (2 - 1) / 2, point 2 (3 - 1.5) / 2; objective 1 (range 4): point 1
    # (5 - 3) / 4, point 2 (4 - 1) / 4. The extremes of either objective are infinitely far.
    assert crowding_distance(points, [0, 1, 2, 3]) == [math.inf, 1.0, 1.5, math.inf]
    assert crowding_distance(points, [3, 1]) == [math.inf, math.inf]
    # An objective on which the front is equal adds nothing (no division by a zero range).
    flat = crowding_distance([(0.0, 1.0), (0.0, 2.0), (0.0, 4.0)], [0, 1, 2])
    assert flat[0] == flat[2] == math.inf and flat[1] == pytest.approx((4.0 - 1.0) / 3.0)
    ranks, distances = crowded_ranking(POINTS)
    assert ranks == [0, 0, 0, 1, 2, 3, 0]
    assert distances[3] == distances[4] == distances[5] == math.inf, "a front of one point is all extreme"


def test_the_front_of_a_history_and_its_hypervolume():
    history = [
        {"arch": "a", "reward": 80.0, "costs": {"m": 5.0}},
        {"arch": "b", "reward": 70.0, "costs": {"m": 2.0}},
        {"arch": "c", "reward": 60.0, "costs": {"m": 3.0}},  # dominated by b
        {"arch": "d", "reward": None, "costs": {"m": 1.0}, "rejected": "over budget"},  # refused: no reward
        {"arch": "e", "reward": 80.0, "costs": {"m": 5.0}},  # equal to a: both kept
        {"arch": "f", "reward": 90.0, "costs": {"m": 9.0}},
    ]
    assert [e["arch"] for e in pareto_front(history, ["m"])] == ["a", "b", "e", "f"]
    # (reward, cost) up to (50, 10): b covers [2, 5) x 20, a [5, 9) x 30, f [9, 10) x 40.
    points = [(e["reward"], e["costs"]["m"]) for e in history if e["reward"] is not None]
    assert hypervolume_2d(points, (50.0, 10.0)) == pytest.approx(3 * 20 + 4 * 30 + 1 * 40)
    assert hypervolume_2d([(40.0, 1.0), (90.0, 12.0)], (50.0, 10.0)) == 0.0, "beyond the reference: nothing"
    figure = draw_pareto_front(history, ["m"])
    assert len(figure.axes) == 1 and figure.axes[0].get_xlabel() == "m"


def _searcher(**options) -> ParetoEvolution:
    searcher = build_searcher("pareto_evolution", NB201Space(), seed=0, **options)
    assert isinstance(searcher, ParetoEvolution) and "pareto_evolution" in list_searchers()
    return searcher


def _priced(searcher: ParetoEvolution, costs: dict[str, float]) -> None:
    """Price each architecture by a fixed table of its text form."""
    searcher.use_costs(lambda arch: {"m": costs[searcher.space.format(arch)]})


def _cells(n: int) -> list:
    space = NB201Space()
    generator = random.Random(3)
    cells: dict[str, object] = {}
    while len(cells) < n:
        arch = space.sample(generator)
        cells[space.format(arch)] = arch
    return list(cells.values())


def test_survival_drops_the_last_front_then_the_most_crowded():
    searcher = _searcher(population_size=4)
    cells = _cells(6)
    # (reward, cost): four trade-offs on one front, then a dominated child, then one more on the front.
    values = [(90.0, 9.0), (80.0, 5.0), (70.0, 4.0), (60.0, 1.0), (65.0, 6.0), (85.0, 6.0)]
    _priced(searcher, {searcher.space.format(c): cost for c, (_, cost) in zip(cells, values)})
    for cell, (reward, _) in zip(cells[:5], values[:5]):
        searcher.tell(cell, reward)
    assert [searcher.space.format(m[0]) for m in searcher.population] == [searcher.space.format(c) for c in cells[:4]]
    # All five on one front now: the member with the smallest crowding distance goes, here not the newest.
    searcher.tell(cells[5], values[5][0])
    points = [(-r, c) for r, c in values[:4] + [values[5]]]
    distances = crowding_distance(points, [0, 1, 2, 3, 4])
    # Rewards: (85 - 70) / 30 for (80, 5) against 0.33 and 0.67; costs: (6 - 4) / 8 against 0.5 and 0.5.
    assert distances[1] == pytest.approx(0.75) and distances[1] == min(distances)
    assert [m[1] for m in searcher.population] == [90.0, 70.0, 60.0, 85.0]
    aging = _searcher(population_size=4, removal="oldest")
    _priced(aging, {aging.space.format(c): cost for c, (_, cost) in zip(cells, values)})
    for cell, (reward, _) in zip(cells, values):
        aging.tell(cell, reward)
    assert [m[1] for m in aging.population] == [70.0, 60.0, 65.0, 85.0]


def _parents(monkeypatch, values: list[tuple[float, float]], sample_size: int) -> list[int]:
    """Which member (by its index in ``values``) each of 300 proposals mutates."""
    searcher = _searcher(population_size=len(values), sample_size=sample_size)
    cells = _cells(len(values))
    _priced(searcher, {searcher.space.format(c): cost for c, (_, cost) in zip(cells, values)})
    for cell, (reward, _) in zip(cells, values):
        searcher.tell(cell, reward)
    monkeypatch.setattr(searcher.space, "mutate", lambda arch, generator: arch)  # the proposal is the parent
    texts = [searcher.space.format(c) for c in cells]
    return [texts.index(searcher.space.format(searcher.ask())) for _ in range(300)]


def test_tournaments_choose_by_front_then_crowding(monkeypatch):
    # Fronts: (70, 2) dominates both others, (60, 3) dominates (50, 5). A tournament of three draws with
    # replacement: the best front drawn wins (probabilities 0.70, 0.26 and 0.04).
    parents = _parents(monkeypatch, [(50.0, 5.0), (70.0, 2.0), (60.0, 3.0)], sample_size=3)
    assert parents.count(1) > parents.count(2) > parents.count(0) > 0
    assert 180 < parents.count(1) < 240
    # One front: the extremes are infinitely far, the middle member wins a binary tournament only against
    # itself (probability 1/9).
    parents = _parents(monkeypatch, [(90.0, 9.0), (80.0, 5.0), (60.0, 1.0)], sample_size=2)
    assert 15 < parents.count(1) < 55 and min(parents.count(0), parents.count(2)) > 100


def test_state_round_trip_and_refusals_and_missing_costs():
    searcher = _searcher(population_size=3)
    cells = _cells(5)
    _priced(searcher, {searcher.space.format(c): float(i) for i, c in enumerate(cells)})
    for i, cell in enumerate(cells[:4]):
        searcher.tell(cell, 50.0 + i)
    searcher.reject(cells[4])
    assert len(searcher.population) == 3 and cells[4] not in [m[0] for m in searcher.population], "not born"
    state = searcher.state_dict()
    restored = build_searcher("pareto_evolution", NB201Space(), seed=5, population_size=3)
    restored.load_state_dict(state)
    assert restored.population == searcher.population
    assert [restored.ask() for _ in range(5)] == [searcher.ask() for _ in range(5)]
    unpriced = _searcher()
    with pytest.raises(RuntimeError, match="configure the search's objectives"):
        unpriced.tell(cells[0], 1.0)
    with pytest.raises(ValueError, match="removal must be one of worst, oldest"):
        _searcher(removal="youngest")
