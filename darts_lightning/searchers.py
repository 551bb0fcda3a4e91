"""Discrete searchers: propose architectures (``ask``) and learn from their rewards (``tell``).

A searcher holds its own random generator, so a seeded search is reproducible and resumable: its
``state_dict`` (plain containers, loadable with ``torch.load(weights_only=True)``) stores the generator
state with everything else it learned.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from .spaces import SearchSpace, get_space

__all__ = ["Searcher", "RandomSearch", "register_searcher", "build_searcher", "list_searchers"]


def _generator_state(generator: random.Random) -> list:
    version, internal, gauss = generator.getstate()
    return [version, list(internal), gauss]


def _set_generator_state(generator: random.Random, state: list) -> None:
    version, internal, gauss = state
    generator.setstate((version, tuple(internal), gauss))


class Searcher:
    """Base class of the discrete searchers."""

    def __init__(self, space: SearchSpace | str, seed: int = 0) -> None:
        self.space = get_space(space)
        self.generator = random.Random(seed)

    def ask(self) -> Any:
        """The next architecture to evaluate."""
        raise NotImplementedError

    def tell(self, arch: Any, reward: float) -> None:
        """The reward of an architecture returned by :meth:`ask`."""

    def converged(self) -> bool:
        """Whether the searcher has stopped exploring (e.g. a policy that became deterministic)."""
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"generator": _generator_state(self.generator)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _set_generator_state(self.generator, state["generator"])


class RandomSearch(Searcher):
    """Uniform sampling from the space (the baseline of every NAS paper; Li & Talwalkar, 2019)."""

    def ask(self) -> Any:
        return self.space.sample(self.generator)


_SEARCHERS: dict[str, Callable[..., Searcher]] = {"random": RandomSearch}


def register_searcher(name: str, factory: Callable[..., Searcher]) -> None:
    if name in _SEARCHERS:
        raise ValueError(f"searcher {name!r} is already registered")
    _SEARCHERS[name] = factory


def list_searchers() -> list[str]:
    return sorted(_SEARCHERS)


def build_searcher(name: str, space: SearchSpace | str, seed: int = 0, **kwargs: Any) -> Searcher:
    if name not in _SEARCHERS:
        raise ValueError(f"unknown searcher {name!r}; valid searchers are: {', '.join(list_searchers())}")
    return _SEARCHERS[name](space, seed=seed, **kwargs)
