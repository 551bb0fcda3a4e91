"""Parts that a module is composed of, chosen in YAML by class path and recorded in checkpoints as plain data.

A search is built from objects: a search space, a relaxation, a gradient estimator, optimizer settings and
remedies. LightningCLI instantiates them from ``class_path`` / ``init_args``; a checkpoint must still load
with ``torch.load(..., weights_only=True)``, so it cannot hold them pickled. Every such part derives from
:class:`Component`, which remembers the arguments it was constructed with: :meth:`Component.config` gives
``{"class_path": ..., "init_args": ...}`` (plain containers only), and :func:`build_component` turns such
a dictionary, a registered name or an instance back into the object.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["Component", "ComponentConfig", "build_component", "class_path", "plain"]

T = TypeVar("T")

#: ``{"class_path": "package.module.Class", "init_args": {...}}``, as LightningCLI writes a chosen class.
ComponentConfig = Mapping[str, Any]


def class_path(cls: type) -> str:
    """``package.module.Class`` of ``cls``."""
    return f"{cls.__module__}.{cls.__qualname__}"


class Component:
    """An object that remembers its constructor arguments (bound to the signature, defaults filled in).

    Subclasses take explicit keyword arguments (no ``**kwargs``), each a plain value or another component,
    so that :meth:`config` describes the object completely and :func:`build_component` rebuilds it.
    """

    _init_args: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Component:
        instance = super().__new__(cls)
        try:
            bound = inspect.signature(cls.__init__).bind(instance, *args, **kwargs)
        except TypeError:  # __init__ raises the same error with its own message
            instance._init_args = {}
            return instance
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        arguments.pop(next(iter(arguments)))  # self
        # A class without its own ``__init__`` has ``object``'s ``(*args, **kwargs)``: keyword arguments are
        # recorded by name and empty catch-alls not at all, so that ``config()`` rebuilds the same object.
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(arguments.pop(name, {}))
            elif parameter.kind is inspect.Parameter.VAR_POSITIONAL and not arguments.get(name):
                arguments.pop(name, None)
        instance._init_args = arguments
        return instance

    def config(self) -> dict[str, Any]:
        """``{"class_path", "init_args"}`` of this object, in plain containers (a checkpoint stores it)."""
        return {"class_path": class_path(type(self)), "init_args": {k: plain(v) for k, v in self._init_args.items()}}

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self._init_args.items())
        return f"{type(self).__name__}({arguments})"


def plain(value: object) -> Any:
    """``value`` in plain containers: components become their :meth:`Component.config`, tuples lists."""
    if isinstance(value, Component):
        return value.config()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"{type(value).__name__} is not a plain value: a component's arguments must be numbers, strings, lists, "
        "dictionaries or other components, so that a checkpoint can record them"
    )


def _import_class(path: str, what: str) -> type:
    module_name, _, name = path.rpartition(".")
    if not module_name:
        raise ValueError(f"{what}: class_path {path!r} is not an import path (package.module.Class)")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"{what}: cannot import class_path {path!r} ({error})") from error
    if not isinstance(found, type):
        raise ValueError(f"{what}: class_path {path!r} is not a class")
    return found


def build_component(
    value: object,
    base: type[T],
    what: str,
    registry: Callable[[str], Callable[..., object]] | None = None,
) -> T:
    """The ``base`` instance ``value`` describes: an instance, a ``{"class_path", "init_args"}`` mapping
    (as :meth:`Component.config` and LightningCLI write it) or, with a ``registry`` lookup, a registered name.

    ``what`` names the setting in errors (``"model.relaxation"``).
    """
    if isinstance(value, base):
        return value
    built: object
    if isinstance(value, str) and registry is not None:
        built = registry(value)()
    elif isinstance(value, Mapping) and "class_path" in value:
        unknown = set(value) - {"class_path", "init_args"}
        if unknown:
            raise ValueError(f"{what}: unknown keys {sorted(unknown)} beside class_path and init_args")
        cls = _import_class(str(value["class_path"]), what)
        if not issubclass(cls, base):
            raise ValueError(f"{what}: {value['class_path']} is not a {base.__name__}")
        built = cls(**dict(value.get("init_args") or {}))
    else:
        names = " or a registered name" if registry is not None else ""
        raise ValueError(
            f"{what} must be a {base.__name__}, a mapping with class_path and init_args{names}, got {value!r}"
        )
    assert isinstance(built, base), f"{what}: the factory of {value!r} did not return a {base.__name__}"
    return built
