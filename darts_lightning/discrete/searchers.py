"""Discrete searchers: propose architectures (``ask``) and learn from their rewards (``tell``).

A searcher holds its own random generator, so a seeded search is reproducible and resumable: its
``state_dict`` (plain containers, loadable with ``torch.load(weights_only=True)``) stores the generator
state with everything else it learned.

Registered searchers:

* ``random``: uniform sampling (:class:`RandomSearch`).
* ``regularized_evolution``: aging (or classic) tournament evolution, Real et al., AAAI 2019
  (:class:`RegularizedEvolution`).
* ``reinforce``: a policy-gradient controller, Williams 1992, factorised as in NAS-Bench-201 or an
  ENAS-style LSTM (:class:`Reinforce`).
* ``local_search``: hill climbing over one-decision neighbourhoods with random restarts, White et al.,
  2020 (:class:`LocalSearch`).
* ``pareto_evolution``: regularized evolution with NSGA-II's non-dominated sorting and crowding distance,
  maximising the reward and minimising costs (:class:`~darts_lightning.discrete.pareto.ParetoEvolution`).

Protocol: a driver calls ``ask`` and answers each proposal with ``tell`` before the next ``ask``; it may
answer a re-proposed architecture from its own history (the searchers treat that reward like any other).
A proposal the driver refuses without evaluating it (over a cost budget,
:mod:`~darts_lightning.discrete.constraints`) is answered with ``reject`` instead; what a searcher learns
from it is its own choice (see :meth:`Searcher.reject`). A searcher that ranks by costs too
(``uses_costs``) is given the function that prices architectures (``use_costs``) before its first ``ask``.
A searcher knows its space only through the :class:`~darts_lightning.spaces.SearchSpace` contract (sample,
mutate, crossover, neighbours, decisions, text form), so every searcher runs on every space. Add one by
subclassing :class:`Searcher` and registering it (``@register_searcher("mine")``).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Generic

import torch
from torch import Tensor, nn

from darts_lightning.spaces import SearchSpace, get_space
from darts_lightning.spaces.base import Arch
from darts_lightning.utils.registry import Registry
from darts_lightning.utils.validation import check_choice, check_keywords, check_range

__all__ = [
    "Searcher", "RandomSearch", "RegularizedEvolution", "Reinforce", "LocalSearch",
    "SEARCHERS", "register_searcher", "build_searcher", "list_searchers",
]


def _generator_state(generator: random.Random) -> list:
    version, internal, gauss = generator.getstate()
    return [version, list(internal), gauss]


def _set_generator_state(generator: random.Random, state: list) -> None:
    version, internal, gauss = state
    generator.setstate((version, tuple(internal), gauss))


class Searcher(Generic[Arch]):
    """Base class of the discrete searchers, for architectures of ``space`` (an instance, a registered name
    or ``{"class_path", "init_args"}``)."""

    def __init__(self, space: SearchSpace[Arch] | str | Mapping[str, Any], seed: int = 0) -> None:
        check_range("seed", seed, 0, integer=True)
        self.space: SearchSpace[Arch] = get_space(space)
        self.generator = random.Random(seed)

    def ask(self) -> Arch:
        """The next architecture to evaluate."""
        raise NotImplementedError

    def tell(self, arch: Arch, reward: float) -> None:
        """The reward of an architecture returned by :meth:`ask`."""

    def reject(self, arch: Arch) -> None:
        """An architecture returned by :meth:`ask` that the driver refused without evaluating it (over a cost
        budget). By default it is told the reward ``-inf``, worse than every evaluated architecture: random
        search ignores it and local search never starts from or moves to it while a feasible cell is at hand.
        Searchers to which an infinite reward means something else override this (regularized evolution keeps
        it out of its population, REINFORCE is told a finite penalty)."""
        self.tell(arch, float("-inf"))

    #: whether the searcher ranks architectures by costs as well (a multi-objective searcher): a driver then
    #: gives it the function that prices them (:meth:`use_costs`) before the first :meth:`ask`
    uses_costs: bool = False

    def use_costs(self, costs: Callable[[Arch], Mapping[str, float]]) -> None:
        """The function that prices an architecture by the search's objectives (each to minimise), from the
        driver; searchers that do not rank by costs (``uses_costs`` False) ignore it."""

    def converged(self) -> bool:
        """Whether the searcher has stopped exploring (e.g. a policy that became deterministic)."""
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"generator": _generator_state(self.generator)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _set_generator_state(self.generator, state["generator"])


SEARCHERS: Registry[Searcher[Any]] = Registry("searcher")


def register_searcher(name: str, factory: Callable[..., Searcher[Any]] | None = None) -> Any:
    """Register a searcher (a :class:`Searcher` subclass or a factory taking the space and ``seed``) by name;
    without ``factory``, a decorator."""
    return SEARCHERS.register(name) if factory is None else SEARCHERS.register(name, factory)


def list_searchers() -> list[str]:
    return SEARCHERS.names()


def build_searcher(name: str, space: SearchSpace[Any] | str | Mapping[str, Any], seed: int = 0, **kwargs: Any) -> Searcher[Any]:
    """The searcher registered as ``name``; ``kwargs`` (a configuration's ``searcher_args``) are checked
    against its constructor's keywords first."""
    factory = SEARCHERS.get(name)
    check_keywords(f"searcher_args of the searcher {name!r}", kwargs, factory, given=("space", "seed"))
    return factory(space, seed=seed, **kwargs)


@register_searcher("random")
class RandomSearch(Searcher[Arch]):
    """Uniform sampling from the space (the baseline of every NAS paper; Li & Talwalkar, 2019)."""

    def ask(self) -> Arch:
        return self.space.sample(self.generator)


# ---------------------------------------------------------------------------------------------------------
# Regularized (aging) evolution


@register_searcher("regularized_evolution")
class RegularizedEvolution(Searcher[Arch]):
    """Regularized evolution (Real, Aggarwal, Huang & Le, "Regularized Evolution for Image Classifier
    Architecture Search", AAAI 2019, Algorithm 1).

    The population starts as ``population_size`` uniformly sampled architectures. Each later proposal is
    a tournament: ``sample_size`` members are drawn uniformly *with replacement* (as in Algorithm 1), the
    best of them is the parent, and the child is ``space.mutate(parent)``. With ``crossover=True`` (an
    option of this package, not part of the paper's algorithm) the child is the space's crossover of the
    two best members of the tournament, then mutated. When the child's reward arrives it joins the
    population and one member leaves: the oldest (``removal="oldest"``, the aging evolution of the paper:
    every architecture dies after ``population_size`` generations however good it was, which the authors
    argue regularises the search against architectures that were lucky once) or the worst
    (``removal="worst"``, the non-aging tournament evolution the paper compares with).

    Defaults are the NAS-Bench-201 REA setting (Dong & Yang, ICLR 2020): population 10 and
    tournament size 3, as passed by ``scripts-search/algos/R-EA.sh`` (``--ea_population 10
    --ea_sample_size 3``) to ``exps/algos/R_EA.py`` in D-X-Y/AutoDL-Projects, which also removes the
    oldest member and mutates one edge's op per child.

    Every proposal (including a re-proposed, already known architecture that a driver answers from its
    history) is told back and joins the population: the searcher does not know about deduplication.
    """

    def __init__(self, space: SearchSpace[Arch] | str | Mapping[str, Any], seed: int = 0, population_size: int = 10,
                 sample_size: int = 3, removal: str = "oldest", crossover: bool = False) -> None:
        super().__init__(space, seed)
        check_range("population_size", population_size, 1, integer=True)
        check_range("sample_size", sample_size, 1, integer=True, hint="the tournament size (NAS-Bench-201's REA: 3)")
        check_choice("removal", removal, ("oldest", "worst"), hint="'oldest': aging evolution, 'worst': tournament evolution")
        check_choice("crossover", crossover, (True, False))
        self.population_size = population_size
        self.sample_size = sample_size
        self.removal = removal
        self.crossover = crossover
        # (architecture, reward), oldest first.
        self.population: list[tuple[Arch, float]] = []

    def ask(self) -> Arch:
        if len(self.population) < self.population_size:
            return self.space.sample(self.generator)
        tournament = [self.generator.choice(self.population) for _ in range(self.sample_size)]
        # Stable sort: on equal rewards the member drawn first wins, so the choice is reproducible.
        ranked = sorted(tournament, key=lambda member: member[1], reverse=True)
        if self.crossover:
            second = ranked[1] if len(ranked) > 1 else ranked[0]
            child = self.space.crossover(ranked[0][0], second[0], self.generator)
        else:
            child = ranked[0][0]
        return self.space.mutate(child, self.generator)

    def reject(self, arch: Arch) -> None:
        """A refused child is not born: the population holds evaluated architectures only, so that every
        tournament picks its parent among networks within the budget."""

    def tell(self, arch: Arch, reward: float) -> None:
        self.population.append((arch, float(reward)))
        if len(self.population) > self.population_size:
            if self.removal == "oldest":
                self.population.pop(0)
            else:
                # min() returns the first (oldest) of equally bad members.
                worst = min(range(len(self.population)), key=lambda i: self.population[i][1])
                self.population.pop(worst)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["population"] = [[self.space.format(arch), reward] for arch, reward in self.population]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = [(self.space.parse(text), float(reward)) for text, reward in state["population"]]


# ---------------------------------------------------------------------------------------------------------
# REINFORCE


class _FactorisedPolicy(nn.Module):
    """Independent categorical distributions, one learnable logit vector per decision (the NAS-Bench-201
    REINFORCE policy). Logits start at zero: the uniform policy, which random search also samples."""

    def __init__(self, sizes: Sequence[int]) -> None:
        super().__init__()
        self.logits = nn.ParameterList([nn.Parameter(torch.zeros(n)) for n in sizes])

    def unroll(self, choices: Sequence[int] | None, generator: torch.Generator | None,
               greedy: bool = False) -> tuple[list[int], Tensor, list[float]]:
        def step(_previous: int | None, t: int) -> Tensor:
            return self.logits[t]

        return _unroll_steps([partial(step, t=t) for t in range(len(self.logits))], choices, generator, greedy)


class _LSTMPolicy(nn.Module):
    """An ENAS-style controller (Pham, Guan, Zoph, Le & Dean, "Efficient Neural Architecture Search via
    Parameter Sharing", ICML 2018): an LSTM that emits one decision per step; the input of step t+1 is a
    learned embedding of the choice made at step t (a learned start vector at step 0), and each decision
    has its own embedding and linear head because decisions may have different numbers of choices.

    One LSTM layer of ``hidden_size`` units, every parameter initialised uniformly in [-0.1, 0.1] from the
    searcher's torch generator. The NAS-Bench-201 ENAS controller
    (``lib/models/cell_searchs/search_model_enas_utils.py`` in D-X-Y/AutoDL-Projects) also uses 32 units
    and that initialisation, but two layers and logits squashed as ``2.5 * tanh(logits / 5)``; neither is
    reproduced here, so that the policy can become deterministic and ``converged()`` can be reached.
    """

    def __init__(self, sizes: Sequence[int], hidden_size: int, generator: torch.Generator) -> None:
        super().__init__()
        self.sizes = list(sizes)
        self.hidden_size = hidden_size
        self.start = nn.Parameter(torch.zeros(1, hidden_size))
        # The choice of decision t feeds step t + 1: the last decision needs no embedding.
        self.embeddings = nn.ModuleList([nn.Embedding(n, hidden_size) for n in self.sizes[:-1]])
        self.cell = nn.LSTMCell(hidden_size, hidden_size)
        self.heads = nn.ModuleList([nn.Linear(hidden_size, n) for n in self.sizes])
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.uniform_(-0.1, 0.1, generator=generator)

    def unroll(self, choices: Sequence[int] | None, generator: torch.Generator | None,
               greedy: bool = False) -> tuple[list[int], Tensor, list[float]]:
        # The initial state and the choice indices follow the policy's parameters (device and dtype).
        zeros = self.start.new_zeros(1, self.hidden_size)
        state: dict[str, Any] = {"h": zeros, "c": zeros}

        def step(previous: int | None, t: int) -> Tensor:
            x = self.start if previous is None else self.embeddings[t - 1](
                torch.full((1,), previous, dtype=torch.long, device=self.start.device))
            state["h"], state["c"] = self.cell(x, (state["h"], state["c"]))
            return self.heads[t](state["h"])[0]

        return _unroll_steps([partial(step, t=t) for t in range(len(self.sizes))], choices, generator, greedy)


def _unroll_steps(steps: Sequence[Callable[[int | None], Tensor]], choices: Sequence[int] | None,
                  generator: torch.Generator | None, greedy: bool) -> tuple[list[int], Tensor, list[float]]:
    """Run a policy decision by decision: each step maps the previous choice to logits. Returns the
    choices (given, sampled with ``generator``, or greedy), the sum of their log-probabilities (with
    gradient), and the largest probability of each step."""
    taken: list[int] = []
    log_prob: Tensor | None = None  # the first step's term starts the sum in the policy's dtype
    max_probs: list[float] = []
    previous: int | None = None
    for t, step in enumerate(steps):
        log_probs = torch.log_softmax(step(previous), dim=-1)
        probs = log_probs.detach().exp()
        if choices is not None:
            choice = int(choices[t])
        elif greedy:
            choice = int(probs.argmax())
        else:
            choice = int(torch.multinomial(probs, 1, generator=generator))
        log_prob = log_probs[choice] if log_prob is None else log_prob + log_probs[choice]
        max_probs.append(float(probs.max()))
        taken.append(choice)
        previous = choice
    if log_prob is None:
        raise ValueError("a policy needs at least one decision; the space has none")
    return taken, log_prob, max_probs


@register_searcher("reinforce")
class Reinforce(Searcher[Arch]):
    """REINFORCE (Williams, "Simple Statistical Gradient-Following Algorithms for Connectionist
    Reinforcement Learning", Machine Learning 1992) as the NAS-Bench-201 baseline runs it.

    The policy is a distribution over the space's categorical decisions (``space.decisions()``):
    ``controller="factorised"`` (default, the NAS-Bench-201 policy: one independent logit vector per
    decision, starting at zero, i.e. uniform; NAS-Bench-201 draws them from 1e-3 * N(0, 1), practically
    uniform too) or ``controller="lstm"`` (an ENAS-style LSTM controller, see :class:`_LSTMPolicy`, with
    ``hidden_size`` units, default 32). ``ask`` samples a decision vector from the policy with a
    ``torch.Generator`` seeded with ``seed``; ``tell`` makes one Adam step on

        loss = -(r - b) * log pi(a),        b <- m * b + (1 - m) * r   (bias-corrected, m = ``momentum``)

    for the told architecture's decisions ``a`` (recomputed from the architecture, so re-proposed
    architectures that a driver answers from its history are learning signal too). As in the
    NAS-Bench-201 baseline the moving average is updated with the new reward *before* the advantage is
    taken, and divided by ``1 - m^n`` so that it is not biased towards 0 early on; the first advantage is
    therefore 0.

    Defaults and where they come from: Adam with learning rate 1e-3 and EMA momentum 0.9 are the values
    ``scripts-search/algos/REINFORCE.sh`` passes to ``exps/algos/reinforce.py`` in D-X-Y/AutoDL-Projects
    (the NAS-Bench-201 REINFORCE baseline), which also uses the raw validation accuracy in percent as the
    reward. ``reward_scale`` (default 1.0: raw reward, as there) multiplies the reward; because Adam
    normalises the gradient by its running magnitude, the scale changes little beyond Adam's epsilon. The
    LSTM controller uses the same learning rate and update. With learning rate 1e-3 a logit moves by at
    most about 1e-3 per step, so over a budget of about 100 the policy stays close to uniform: expect
    results near random search there (as NAS-Bench-201 reports); larger learning rates learn faster on
    easy problems and risk settling on a wrong cell on hard ones.

    ``converged()`` is True when every decision's most likely choice has probability above
    ``converge_threshold`` (for the LSTM: along its greedy decision sequence, whose steps are conditional).

    An architecture the driver refuses (over a cost budget, :meth:`reject`) is told the lowest reward told so
    far, a penalty on the rewards' own scale: ``-inf`` would make the baseline and every later advantage
    infinite or NaN. Before the first reward there is nothing to compare with, and a refusal makes no step.
    """

    def __init__(self, space: SearchSpace[Arch] | str | Mapping[str, Any], seed: int = 0, learning_rate: float = 1e-3,
                 momentum: float = 0.9,
                 controller: str = "factorised", hidden_size: int = 32, reward_scale: float = 1.0,
                 converge_threshold: float = 0.99) -> None:
        super().__init__(space, seed)
        check_choice("controller", controller, ("factorised", "lstm"))
        check_range("learning_rate", learning_rate, 0)
        check_range("momentum", momentum, 0, 1, high_open=True, hint="the moving average of the reward baseline")
        check_range("hidden_size", hidden_size, 1, integer=True)
        check_range("reward_scale", reward_scale, 0, low_open=True)
        check_range("converge_threshold", converge_threshold, 0, 1, hint="1: never converged")
        self.controller = controller
        self.momentum = momentum
        self.reward_scale = reward_scale
        self.converge_threshold = converge_threshold
        self.torch_generator = torch.Generator().manual_seed(seed)
        sizes = self.space.decisions()
        if controller == "lstm":
            self.policy: _FactorisedPolicy | _LSTMPolicy = _LSTMPolicy(sizes, hidden_size, self.torch_generator)
        else:
            self.policy = _FactorisedPolicy(sizes)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=learning_rate)
        self.baseline_numerator = 0.0
        self.baseline_denominator = 0.0
        self.lowest: float | None = None  # the lowest reward told, the penalty of a refused architecture

    @property
    def baseline(self) -> float | None:
        """The bias-corrected moving average of the rewards (None before the first reward)."""
        return self.baseline_numerator / self.baseline_denominator if self.baseline_denominator else None

    def ask(self) -> Arch:
        with torch.no_grad():
            choices, _, _ = self.policy.unroll(None, self.torch_generator)
        return self.space.from_decisions(choices)

    def reject(self, arch: Arch) -> None:
        if self.lowest is not None:
            self.tell(arch, self.lowest)

    def tell(self, arch: Arch, reward: float) -> None:
        self.lowest = float(reward) if self.lowest is None else min(self.lowest, float(reward))
        r = float(reward) * self.reward_scale
        self.baseline_numerator = self.momentum * self.baseline_numerator + (1.0 - self.momentum) * r
        self.baseline_denominator = self.momentum * self.baseline_denominator + (1.0 - self.momentum)
        advantage = r - self.baseline_numerator / self.baseline_denominator
        _, log_prob, _ = self.policy.unroll(self.space.to_decisions(arch), None)
        loss = -advantage * log_prob
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def probabilities(self) -> list[float]:
        """The largest probability of each decision (along the greedy sequence for the LSTM)."""
        with torch.no_grad():
            _, _, max_probs = self.policy.unroll(None, None, greedy=True)
        return max_probs

    def converged(self) -> bool:
        return all(p > self.converge_threshold for p in self.probabilities())

    def best(self) -> Arch:
        """The policy's most likely architecture (its greedy decisions)."""
        with torch.no_grad():
            choices, _, _ = self.policy.unroll(None, None, greedy=True)
        return self.space.from_decisions(choices)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["policy"] = {name: tensor.detach().clone() for name, tensor in self.policy.state_dict().items()}
        state["optimizer"] = copy.deepcopy(self.optimizer.state_dict())
        state["torch_generator"] = self.torch_generator.get_state()
        state["baseline"] = [self.baseline_numerator, self.baseline_denominator]
        state["lowest"] = self.lowest
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.torch_generator.set_state(state["torch_generator"])
        self.baseline_numerator, self.baseline_denominator = (float(v) for v in state["baseline"])
        # States written before refusals existed have no lowest reward: none told then counts as none known.
        lowest = state.get("lowest")
        self.lowest = None if lowest is None else float(lowest)


# ---------------------------------------------------------------------------------------------------------
# Local search


@register_searcher("local_search")
class LocalSearch(Searcher[Arch]):
    """Local search (White, Nolen, Ravichandran & Dey, "Local Search is State of the Art for Neural
    Architecture Search Benchmarks", 2020; UAI 2021 as "Exploring the Loss Landscape in Neural
    Architecture Search"), hill climbing over the space's one-decision neighbourhood, with the decisions of
    the paper's reference implementation: ``local_search`` in ``naszilla/nas_algorithms.py`` of
    naszilla/naszilla at commit 7e6549146120687615d7cbb8d1a08ef234d52083 (l.295-375).

    That implementation never queries an architecture twice: it keeps every queried cell (by its encoding,
    the NAS-Bench-201 cell string) and

    * starts a climb from the best of ``num_init`` (here ``initial``, default 10) uniformly sampled cells,
      re-drawing any sample already queried, so that every climb starts from new cells (l.318-333);
    * walks the current cell's neighbours (``space.neighbours``) in a random order and *skips* those
      already queried, even if one of them is known to be better (l.341-343). With ``improvement="first"``
      (default; ``query_full_nbhd=False`` there) it moves to the first newly queried neighbour that is
      strictly better and starts on that one's neighbourhood (l.352-356); with ``improvement="best"``
      (``query_full_nbhd=True``) it queries every new neighbour and then moves to the best of them if that
      is strictly better than the current cell (l.366-371);
    * when no new neighbour is better (or none is new) the current cell is a local optimum and a new climb
      starts from fresh random samples (``stop_at_minimum=True``, its default, l.366-367).

    Here the same rules hold, so a searcher seeded with ``s`` proposes exactly the cells that naszilla's
    ``local_search`` queries after ``random.seed(s)`` (on a space whose sampling and neighbour order are
    those of its ``Cell201`` with the ops relabelled; both draw from a ``random.Random`` stream). Cells are
    identified by their decisions (``space.to_decisions``), as naszilla identifies them by their string:
    isomorphic cells with different encodings are distinct here too, and a deduplicating driver (such as
    :class:`~darts_lightning.DiscreteSearch`) answers such a proposal from its history at no budget cost,
    where naszilla pays a query. Ties keep the first cell (naszilla's stable sort by loss).
    ``converged()`` is True once every cell of the space has been proposed (nothing new is left).

    Implemented with ask/tell: ``ask`` pops the next architecture from an internal queue (random starts
    or the current neighbourhood, less the cells already proposed); ``tell`` updates the climb and, once
    every queued proposal of the current step has been answered, refills the queue. Each ``ask`` should be
    answered by ``tell`` before the next one if the climb is to follow the reference exactly; an ``ask``
    while the step's proposals are all out unanswered gets a new random cell. The state (``state_dict``)
    holds every proposed cell, so a resumed search never re-proposes one either.
    """

    def __init__(self, space: SearchSpace[Arch] | str | Mapping[str, Any], seed: int = 0, initial: int = 10,
                 improvement: str = "first") -> None:
        super().__init__(space, seed)
        check_range("initial", initial, 1, integer=True)
        check_choice("improvement", improvement, ("first", "best"))
        self.initial = initial
        self.improvement = improvement
        self.phase = "start"  # "start": sampling random architectures; "climb": proposing neighbours
        self.queue: list[Arch] = []  # architectures still to propose in this step
        self.outstanding = 0  # proposals not yet answered
        self.starts: list[tuple[Arch, float]] = []  # rewards of this climb's random architectures
        self.current: tuple[Arch, float] | None = None  # the climb's current architecture
        self.best_neighbour: tuple[Arch, float] | None = None  # the step's best neighbour (improvement="best")
        self.climbs = 0  # completed climbs (local optima reached)
        self.proposed: dict[tuple[int, ...], None] = {}  # every architecture proposed so far (an ordered set)
        self._refill()

    def _identity(self, arch: Arch) -> tuple[int, ...]:
        return tuple(self.space.to_decisions(arch))

    def _is_new(self, arch: Arch) -> bool:
        return self._identity(arch) not in self.proposed

    def _exhausted(self) -> bool:
        return len(self.proposed) >= self.space.size()

    def _refill(self) -> None:
        """The proposals of the next step: ``initial`` new random cells, or the current cell's neighbours
        in a random order (those already proposed are dropped by :meth:`_advance`)."""
        if self.phase == "start":
            # Drawn one after another, each re-drawn while it was proposed before or is already queued,
            # as naszilla samples and queries its starts one by one.
            self.queue, queued = [], set()
            while len(self.queue) < self.initial and len(self.proposed) + len(self.queue) < self.space.size():
                arch = self.space.sample(self.generator)
                identity = self._identity(arch)
                if identity not in self.proposed and identity not in queued:
                    queued.add(identity)
                    self.queue.append(arch)
        else:
            assert self.current is not None
            self.queue = self.space.neighbours(self.current[0])
            self.generator.shuffle(self.queue)
            self.best_neighbour = None

    def _advance(self) -> None:
        """Drop queued cells that were already proposed, and close every step whose proposals have all been
        answered: pick the best start, move to the best neighbour (``improvement="best"``) or restart at a
        local optimum, until the queue holds a new cell or the space is exhausted."""
        while True:
            self.queue = [arch for arch in self.queue if self._is_new(arch)]
            if self.queue or self.outstanding:
                return
            if self.phase == "start":
                if not self.starts:  # nothing new to sample: the space is exhausted
                    return
                # max() keeps the first of equal rewards.
                self.current = max(self.starts, key=lambda s: s[1])
                self.starts = []
                self.phase = "climb"
            else:
                assert self.current is not None, "a climb always has a current cell"
                if self.improvement == "best" and self.best_neighbour is not None and self.best_neighbour[1] > self.current[1]:
                    self.current = self.best_neighbour
                else:
                    self.climbs += 1
                    self.current = None
                    self.phase = "start"
            self._refill()

    def ask(self) -> Arch:
        self._advance()
        if not self.queue:
            if self._exhausted():
                raise RuntimeError(
                    f"local search has proposed all {self.space.size()} architectures of the space; "
                    "stop asking when converged() is True"
                )
            # Every proposal of this step was asked but not yet answered: propose a new random architecture
            # rather than block; its reward is used as any other told reward.
            while True:
                arch = self.space.sample(self.generator)
                if self._is_new(arch):
                    break
        else:
            self.outstanding += 1
            arch = self.queue.pop(0)
        self.proposed[self._identity(arch)] = None
        return arch

    def tell(self, arch: Arch, reward: float) -> None:
        reward = float(reward)
        self.outstanding = max(0, self.outstanding - 1)
        if self.phase == "start":
            self.starts.append((arch, reward))
        else:
            assert self.current is not None
            if self.improvement == "first" and reward > self.current[1]:
                self.current = (arch, reward)
                self.outstanding = 0
                self._refill()
            elif self.improvement == "best" and (self.best_neighbour is None or reward > self.best_neighbour[1]):
                self.best_neighbour = (arch, reward)
        self._advance()

    def converged(self) -> bool:
        return self._exhausted()

    def state_dict(self) -> dict[str, Any]:
        fmt = self.space.format

        def pair(entry: tuple[Arch, float] | None) -> list | None:
            return None if entry is None else [fmt(entry[0]), entry[1]]

        state = super().state_dict()
        state.update({
            "phase": self.phase, "queue": [fmt(a) for a in self.queue], "outstanding": self.outstanding,
            "starts": [pair(s) for s in self.starts], "current": pair(self.current),
            "best_neighbour": pair(self.best_neighbour), "climbs": self.climbs,
            "proposed": [list(identity) for identity in self.proposed],
        })
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        parse = self.space.parse

        def pair(entry: list) -> tuple[Arch, float]:
            return parse(entry[0]), float(entry[1])

        def optional_pair(entry: list | None) -> tuple[Arch, float] | None:
            return None if entry is None else pair(entry)

        if "proposed" not in state:
            raise ValueError(
                "this local-search state has no 'proposed' list of the architectures it proposed (it was written "
                "by a version that re-proposed them); resume it with that version or start a new search"
            )
        super().load_state_dict(state)
        self.phase = state["phase"]
        self.queue = [parse(text) for text in state["queue"]]
        self.outstanding = int(state["outstanding"])
        self.starts = [pair(s) for s in state["starts"]]
        self.current = optional_pair(state["current"])
        self.best_neighbour = optional_pair(state["best_neighbour"])
        self.climbs = int(state["climbs"])
        self.proposed = {tuple(int(c) for c in identity): None for identity in state["proposed"]}
