"""One registry mechanism for everything a config names: ops, relaxations, search spaces, remedies,
estimators, searchers and evaluators.

A :class:`Registry` maps names to factories (a class or a function). It registers by decorator
(``@RELAXATIONS.register("gdas")``) or by call, lists its names, and refuses an unknown name with an error
that lists the valid ones. Each kind exposes the three usual functions (``register_relaxation``,
``list_relaxations``, ``build_relaxation``), which are thin wrappers around its registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

__all__ = ["Registry"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[T]):
    """Factories of ``T`` by name, with errors that name the valid choices."""

    def __init__(self, kind: str, plural: str | None = None, hint: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.hint = hint  # what else the unknown-name error suggests
        self._factories: dict[str, Callable[..., T]] = {}

    @overload
    def register(self, name: str, *, overwrite: bool = False) -> Callable[[F], F]: ...

    @overload
    def register(self, name: str, factory: F, *, overwrite: bool = False) -> F: ...

    def register(self, name: str, factory: F | None = None, *, overwrite: bool = False) -> F | Callable[[F], F]:
        """Register ``factory`` as ``name``; without a factory, a decorator that registers what it decorates.
        A name is registered once, unless ``overwrite`` replaces it."""

        def add(item: F) -> F:
            if not callable(item):
                raise TypeError(f"{self.kind} {name!r}: the factory must be callable, got {type(item).__name__}")
            if name in self._factories and not overwrite:
                raise ValueError(f"{self.kind} {name!r} is already registered; pass overwrite=True to replace it")
            self._factories[name] = item
            return item

        return add if factory is None else add(factory)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``."""
        if name not in self._factories:
            hint = f" ({self.hint})" if self.hint else ""
            raise ValueError(f"unknown {self.kind} {name!r}; valid {self.plural} are: {', '.join(self.names())}{hint}")
        return self._factories[name]

    def build(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)
