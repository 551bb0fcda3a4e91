"""Several objectives: the Pareto front of a search and a searcher that evolves it.

A search with objectives (:mod:`~darts_lightning.discrete.constraints`) maximises the reward and minimises
each objective's cost. One architecture *dominates* another when it is at least as good in every objective
and better in one; the *Pareto front* of a set is its non-dominated members, the trade-offs none of the others
improves on.

* :func:`non_dominated_sort` and :func:`crowding_distance`: the two rankings of NSGA-II (Deb, Pratap,
  Agarwal & Meyarivan, "A Fast and Elitist Multiobjective Genetic Algorithm: NSGA-II", IEEE Transactions on
  Evolutionary Computation 6(2), 2002), Sections III-A and III-B;
* :class:`ParetoEvolution` (searcher ``pareto_evolution``): regularized evolution whose tournaments and
  survival rank by them;
* :func:`pareto_front` of a search's history, :func:`hypervolume_2d` (the area a two-objective front
  dominates up to a reference point) and :func:`draw_pareto_front`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from darts_lightning.discrete.searchers import Searcher, register_searcher
from darts_lightning.spaces import SearchSpace
from darts_lightning.spaces.base import Arch
from darts_lightning.utils.validation import check_choice, check_range

__all__ = [
    "dominates", "non_dominated_sort", "crowding_distance", "crowded_ranking", "objective_vector", "pareto_front",
    "hypervolume_2d", "draw_pareto_front", "ParetoEvolution",
]

Point = Sequence[float]
"""An objective vector, every objective to minimise (a reward enters negated)."""


def dominates(a: Point, b: Point) -> bool:
    """Whether ``a`` dominates ``b`` (objectives minimised): no worse in any, better in at least one."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated_sort(points: Sequence[Point]) -> list[list[int]]:
    """The fronts of ``points`` (indices), best first: NSGA-II's fast non-dominated sort (Deb et al. 2002,
    Section III-A). The first front holds the points no other dominates, each later one the points only the
    earlier fronts dominate. Every pair is compared once, O(M N²); each front lists its indices in order."""
    n = len(points)
    dominated: list[list[int]] = [[] for _ in range(n)]  # S_p: the points p dominates
    counts = [0] * n  # n_p: how many points dominate p
    for p in range(n):
        for q in range(p + 1, n):
            if dominates(points[p], points[q]):
                dominated[p].append(q)
                counts[q] += 1
            elif dominates(points[q], points[p]):
                dominated[q].append(p)
                counts[p] += 1
    fronts: list[list[int]] = []
    current = [p for p in range(n) if counts[p] == 0]
    while current:
        fronts.append(current)
        following: list[int] = []
        for p in current:
            for q in dominated[p]:
                counts[q] -= 1
                if counts[q] == 0:
                    following.append(q)
        current = sorted(following)
    return fronts


def crowding_distance(points: Sequence[Point], front: Sequence[int]) -> list[float]:
    """The crowding distance of each member of ``front`` (indices into ``points``), in the front's order:
    NSGA-II's crowding-distance assignment (Deb et al. 2002, Section III-B). Per objective the front is sorted
    by it (stably), its two extremes get an infinite distance and every other member adds the normalised gap
    between its two neighbours, ``(f[next] - f[previous]) / (f_max - f_min)`` with the extremes of the front;
    an objective on which the whole front is equal adds nothing."""
    distance = dict.fromkeys(front, 0.0)
    if not front:
        return []
    for m in range(len(points[front[0]])):
        ordered = sorted(front, key=lambda i: points[i][m])
        low, high = points[ordered[0]][m], points[ordered[-1]][m]
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        if high == low:
            continue
        for k in range(1, len(ordered) - 1):
            distance[ordered[k]] += (points[ordered[k + 1]][m] - points[ordered[k - 1]][m]) / (high - low)
    return [distance[i] for i in front]


def crowded_ranking(points: Sequence[Point]) -> tuple[list[int], list[float]]:
    """Each point's front (0: non-dominated) and crowding distance within it: the two keys of NSGA-II's
    crowded-comparison operator (Deb et al. 2002, Section III-B: ``i`` precedes ``j`` if its front is better,
    or, in the same front, if its crowding distance is larger)."""
    ranks = [0] * len(points)
    distances = [0.0] * len(points)
    for rank, front in enumerate(non_dominated_sort(points)):
        for i, d in zip(front, crowding_distance(points, front)):
            ranks[i], distances[i] = rank, d
    return ranks, distances


def objective_vector(reward: float, costs: Mapping[str, float], labels: Sequence[str]) -> tuple[float, ...]:
    """The objectives of an evaluated architecture, all to minimise: ``-reward`` and the costs ``labels``."""
    return (-float(reward), *(float(costs[label]) for label in labels))


def pareto_front(entries: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[Mapping[str, Any]]:
    """The non-dominated evaluated entries of a search's history (``reward`` maximised, the ``costs`` of
    ``labels`` minimised; refused entries, without a reward, are left out), in the history's order. Entries
    with equal objectives are all kept: none dominates another."""
    evaluated = [(i, e) for i, e in enumerate(entries) if e.get("reward") is not None]
    points = {i: objective_vector(e["reward"], e.get("costs") or {}, labels) for i, e in evaluated}
    # In lexicographic order a point can be dominated only by points before it: each is compared with the
    # front found so far only.
    kept: list[int] = []
    for i in sorted(points, key=lambda i: (points[i], i)):
        if not any(dominates(points[j], points[i]) for j in kept):
            kept.append(i)
    return [entries[i] for i in sorted(kept)]


def hypervolume_2d(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """The area that ``points`` (reward, cost) dominate up to ``reference`` (the worst reward, the largest
    cost): the union of the rectangles between each point and the reference. Points no better than the
    reference in both contribute nothing; dominated points may be included (they add nothing either)."""
    reward_ref, cost_ref = reference
    inside = sorted((cost, reward) for reward, cost in points if reward > reward_ref and cost < cost_ref)
    area, best = 0.0, reward_ref
    for k, (cost, reward) in enumerate(inside):
        best = max(best, reward)
        following = inside[k + 1][0] if k + 1 < len(inside) else cost_ref
        area += (following - cost) * (best - reward_ref)
    return area


def draw_pareto_front(entries: Sequence[Mapping[str, Any]], labels: Sequence[str],
                      reward_name: str = "reward") -> Figure:
    """The evaluated architectures of a history (grey) and its Pareto front (red, joined in cost order), the
    reward against each objective's cost, one panel per objective."""
    evaluated = [e for e in entries if e.get("reward") is not None]
    front = pareto_front(evaluated, labels)
    figure = Figure(figsize=(4.5 * len(labels), 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(labels), squeeze=False)[0]
    for ax, label in zip(axes, labels):
        ax.scatter([e["costs"][label] for e in evaluated], [e["reward"] for e in evaluated], s=10, c="0.6",
                   label="evaluated")
        ordered = sorted(front, key=lambda e: e["costs"][label])
        ax.plot([e["costs"][label] for e in ordered], [e["reward"] for e in ordered], "o-", c="tab:red", ms=4,
                label="Pareto front")
        ax.set_xlabel(label)
        ax.set_ylabel(reward_name)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    figure.suptitle(f"{len(front)} of {len(evaluated)} evaluated architectures on the front", fontsize=10)
    figure.tight_layout()
    return figure


@register_searcher("pareto_evolution")
class ParetoEvolution(Searcher[Arch]):
    """Regularized evolution (Real et al., AAAI 2019) ranked as NSGA-II ranks (Deb et al., IEEE TEC 2002):
    maximise the reward and minimise the search's objective costs.

    What is implemented:

    * the population starts as ``population_size`` uniformly sampled architectures, as in regularized
      evolution;
    * every later proposal mutates (``space.mutate``) the winner of a tournament of ``sample_size`` members
      drawn uniformly with replacement, where the winner is the best by NSGA-II's crowded-comparison operator
      (Section III-B: the better non-dominated front, then the larger crowding distance; on a tie the member
      drawn first). The fronts and distances are those of the current population
      (:func:`crowded_ranking`: the fast non-dominated sort of Section III-A and the crowding distance of
      Section III-B). ``sample_size=2`` is the binary tournament of NSGA-II's main loop (Section III-C).
      With ``crossover`` the two best of the tournament are crossed (``space.crossover``) before the
      mutation;
    * when a child's reward arrives it joins the population and, once the population exceeds
      ``population_size``, one member leaves: with ``removal="worst"`` (default) the member NSGA-II's
      elitist survival (Section III-C) would drop first, the one of the last front with the smallest
      crowding distance (the oldest of equals); with ``removal="oldest"`` the oldest, the aging of
      regularized evolution.

    What differs from the paper: NSGA-II is generational (N children per generation, then the best N of
    parents and children by fronts and crowding); here one child is made at a time and the survival step
    removes one member, the steady-state (μ + 1) form of the same truncation, so that the searcher runs
    under the ask/tell protocol of the other searchers. Constraints are handled by the driver, which refuses
    an architecture over a budget before it is evaluated: a refused child is not born (:meth:`reject`), so
    every member is feasible and the paper's constrained domination (its constraint-handling section) is
    not needed.

    The objectives come from the driver (``use_costs``: the costs of the search's ``objectives``, e.g.
    ``multiply_adds``), so the searcher works with any space and cost model.

    Defaults: population 10, tournament 3 (regularized evolution's NAS-Bench-201 setting) with
    ``removal="worst"``. They were chosen on ``benchmarks/nb201_pareto.py`` (hypervolume of accuracy against
    multiply-adds, budget 100) with seeds 1000-1029, disjoint from the seeds 0-99 the README reports, among
    populations 10, 20, 50, tournaments 2, 3 and both removals: NSGA-II's survival beat aging at every
    population and tournament size, population 10 and 20 beat 50, and the tournament size mattered little
    (mean hypervolume gain over random search 0.0106 for 10/3, 0.0100 for 10/2, 0.0096 for 20/3, standard
    error about 0.001).
    """

    uses_costs = True

    def __init__(self, space: SearchSpace[Arch] | str | Mapping[str, Any], seed: int = 0, population_size: int = 10,
                 sample_size: int = 3, removal: str = "worst", crossover: bool = False) -> None:
        super().__init__(space, seed)
        check_range("population_size", population_size, 1, integer=True)
        check_range("sample_size", sample_size, 1, integer=True, hint="the tournament size (NSGA-II's binary tournament: 2)")
        check_choice("removal", removal, ("worst", "oldest"),
                     hint="'worst': NSGA-II's survival by fronts and crowding, 'oldest': aging evolution")
        check_choice("crossover", crossover, (True, False))
        self.population_size = population_size
        self.sample_size = sample_size
        self.removal = removal
        self.crossover = crossover
        self._price: Callable[[Arch], Mapping[str, float]] | None = None
        # (architecture, reward, costs of the objectives), oldest first.
        self.population: list[tuple[Arch, float, tuple[float, ...]]] = []

    def use_costs(self, costs: Callable[[Arch], Mapping[str, float]]) -> None:
        self._price = costs

    def _points(self) -> list[tuple[float, ...]]:
        return [(-reward, *costs) for _, reward, costs in self.population]

    def ask(self) -> Arch:
        if len(self.population) < self.population_size:
            return self.space.sample(self.generator)
        ranks, distances = crowded_ranking(self._points())
        tournament = [self.generator.randrange(len(self.population)) for _ in range(self.sample_size)]
        # Stable sort: on equal fronts and distances the member drawn first wins.
        ranked = sorted(tournament, key=lambda i: (ranks[i], -distances[i]))
        parent = self.population[ranked[0]][0]
        if self.crossover:
            second = self.population[ranked[1] if len(ranked) > 1 else ranked[0]][0]
            parent = self.space.crossover(parent, second, self.generator)
        return self.space.mutate(parent, self.generator)

    def reject(self, arch: Arch) -> None:
        """A refused child is not born: the population holds evaluated architectures within the budgets."""

    def tell(self, arch: Arch, reward: float) -> None:
        if self._price is None:
            raise RuntimeError(
                "pareto_evolution ranks architectures by their costs too: configure the search's objectives (e.g. "
                "objectives: [multiply_adds]), whose pricing the driver gives it with use_costs"
            )
        costs = tuple(float(c) for c in self._price(arch).values())
        self.population.append((arch, float(reward), costs))
        if len(self.population) <= self.population_size:
            return
        if self.removal == "oldest":
            self.population.pop(0)
            return
        points = self._points()
        fronts = non_dominated_sort(points)
        last = fronts[-1]
        distances = crowding_distance(points, last)
        # min() returns the first (oldest, the front lists indices in order) of equally crowded members.
        self.population.pop(last[min(range(len(last)), key=lambda k: distances[k])])

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["population"] = [[self.space.format(arch), reward, list(costs)] for arch, reward, costs in self.population]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = [(self.space.parse(text), float(reward), tuple(float(c) for c in costs))
                           for text, reward, costs in state["population"]]
