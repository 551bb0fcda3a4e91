"""A small named registry: the one mechanism behind the relaxations, search spaces, evaluators and
searchers that configs name by string (ops have their own, richer registry in :mod:`darts_lightning.ops`)."""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Factories by name, with errors that name the valid choices."""

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str, factory: Callable[..., T]) -> Callable[..., T]:
        if name in self._factories:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._factories[name] = factory
        return factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``."""
        if name not in self._factories:
            raise ValueError(f"unknown {self.kind} {name!r}; valid {self.plural} are: {', '.join(self.names())}")
        return self._factories[name]

    def build(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)
