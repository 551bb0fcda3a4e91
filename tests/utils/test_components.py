"""Parts that remember their arguments (Component, build_component) and the registry of names."""

from __future__ import annotations

import pytest

from darts_lightning.differentiable.estimators import SecondOrderGradient
from darts_lightning.differentiable.optimizers import ArchOptimizer, WeightOptimizer
from darts_lightning.differentiable.relaxations import RELAXATIONS, GDASRelaxation
from darts_lightning.differentiable.remedies import AuxiliarySkip, Remedy
from darts_lightning.spaces.darts.space import DartsSpace
from darts_lightning.spaces.mixing import Relaxation
from darts_lightning.utils.components import Component, build_component, class_path, plain
from darts_lightning.utils.registry import Registry


class Pair(Component):
    """A component whose arguments are a number and another component."""

    def __init__(self, size: int = 2, inner: Component | None = None) -> None:
        self.size, self.inner = size, inner


class Keywords(Component):
    def __init__(self, width: int = 1, **options: float) -> None:
        self.width, self.options = width, options


class Bare(Component):
    """A component without its own ``__init__``."""


@pytest.mark.parametrize("part,base", [
    (DartsSpace(ops=["none", "skip_connect", "sep_conv_3x3"], channels=4, layers=2, genotype_rule="snas"), DartsSpace),
    (GDASRelaxation(tau_max=3.0, schedule="exponential"), Relaxation),
    (SecondOrderGradient(hessian="exact", xi=0.1), SecondOrderGradient),
    (WeightOptimizer(lr=0.1, nesterov=True), WeightOptimizer),
    (ArchOptimizer(betas=(0.6, 0.9)), ArchOptimizer),
    (AuxiliarySkip(), Remedy),
])
def test_config_round_trips_through_build_component(part, base):
    config = part.config()
    assert config["class_path"] == class_path(type(part))
    assert plain(config) == config, "plain containers only"
    rebuilt = build_component(config, base, "model.part")
    assert type(rebuilt) is type(part) and rebuilt.config() == config
    assert build_component(part, base, "model.part") is part, "an instance is taken as it is"


def test_config_records_every_argument_with_the_defaults_filled_in():
    assert GDASRelaxation(tau_max=3.0).config() == {
        "class_path": "darts_lightning.differentiable.relaxations.GDASRelaxation",
        "init_args": {"tau_max": 3.0, "tau_min": 0.1, "schedule": "linear", "partial_channels": 1, "max_draws": 100},
    }
    assert ArchOptimizer(betas=(0.6, 0.9)).config()["init_args"]["betas"] == [0.6, 0.9], "tuples become lists"
    assert repr(WeightOptimizer(lr=0.1)).startswith("WeightOptimizer(lr=0.1, lr_min=0.001, ")
    # A nested component is recorded by its own config.
    assert Pair(3, Pair()).config()["init_args"] == {
        "size": 3, "inner": {"class_path": f"{__name__}.Pair", "init_args": {"size": 2, "inner": None}},
    }


def test_components_without_their_own_arguments_or_with_keywords_rebuild_equal():
    assert Bare().config() == {"class_path": f"{__name__}.Bare", "init_args": {}}
    assert build_component(Bare().config(), Bare, "bare").config() == Bare().config()
    keywords = Keywords(2, depth=3.0)
    assert keywords.config()["init_args"] == {"width": 2, "depth": 3.0}
    assert build_component(keywords.config(), Keywords, "keywords").options == {"depth": 3.0}


def test_non_plain_arguments_are_refused_when_recorded():
    with pytest.raises(TypeError, match="object is not a plain value: a component's arguments must be numbers"):
        Pair(object()).config()
    with pytest.raises(TypeError, match="unexpected keyword argument 'depth'"):
        Pair(depth=1)


def test_build_component_errors_name_the_setting_and_the_problem():
    with pytest.raises(ValueError, match=r"model\.relaxation: cannot import class_path 'darts_lightning\.nowhere\.Relaxed'"):
        build_component({"class_path": "darts_lightning.nowhere.Relaxed"}, Relaxation, "model.relaxation")
    with pytest.raises(ValueError, match="model.relaxation: class_path 'GDASRelaxation' is not an import path"):
        build_component({"class_path": "GDASRelaxation"}, Relaxation, "model.relaxation")
    with pytest.raises(ValueError, match="'darts_lightning.differentiable.relaxations.build_relaxation' is not a class"):
        build_component({"class_path": "darts_lightning.differentiable.relaxations.build_relaxation"}, Relaxation, "x")
    with pytest.raises(ValueError, match=r"model\.relaxation: darts_lightning\.spaces\.darts\.space\.DartsSpace is not a "
                                         r"Relaxation"):
        build_component(DartsSpace().config(), Relaxation, "model.relaxation")
    with pytest.raises(ValueError, match=r"unknown keys \['init_arg'\] beside class_path and init_args"):
        build_component({"class_path": class_path(GDASRelaxation), "init_arg": {}}, Relaxation, "model.relaxation")
    with pytest.raises(ValueError, match="unknown relaxation 'gumbel'; valid relaxations are: darts, drnas, gdas, pcdarts, snas"):
        build_component("gumbel", Relaxation, "model.relaxation", RELAXATIONS.get)
    with pytest.raises(ValueError, match="model.relaxation must be a Relaxation, a mapping with class_path and init_args "
                                         "or a registered name, got 3"):
        build_component(3, Relaxation, "model.relaxation", RELAXATIONS.get)
    with pytest.raises(ValueError, match="must be a Relaxation, a mapping with class_path and init_args, got 'gdas'"):
        build_component("gdas", Relaxation, "model.relaxation")
    assert type(build_component("gdas", Relaxation, "model.relaxation", RELAXATIONS.get)) is GDASRelaxation


def test_registry_registers_by_decorator_and_by_call_and_lists_valid_names():
    registry: Registry[Component] = Registry("widget")

    @registry.register("pair")
    class Registered(Pair):
        pass

    assert Registered.__name__ == "Registered", "the decorator returns the class itself"
    registry.register("bare", Bare)
    assert registry.names() == ["bare", "pair"] and "pair" in registry and "other" not in registry
    assert registry.get("pair") is Registered
    built = registry.build("pair", size=5)
    assert isinstance(built, Registered) and built.size == 5
    with pytest.raises(ValueError, match="widget 'pair' is already registered"):
        registry.register("pair", Bare)
    with pytest.raises(ValueError, match="unknown widget 'pear'; valid widgets are: bare, pair"):
        registry.get("pear")
    plural = Registry("remedy", plural="remedies")
    with pytest.raises(ValueError, match="unknown remedy 'x'; valid remedies are: $"):
        plural.get("x")
