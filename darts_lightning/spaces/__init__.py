"""Search spaces: the ops, edges and cells they are built from, their supernets, their answers and the
networks those describe, behind one contract (:class:`SearchSpace`, :mod:`darts_lightning.spaces.base`).

Registered spaces: ``darts`` (:class:`DartsSpace`, the DARTS CNN cell; answers are
:class:`~darts_lightning.Genotype` s), ``rdarts_s1`` .. ``rdarts_s4`` (:class:`RDartsSpace`, the DARTS cell
with R-DARTS's reduced candidate ops) and ``nasbench201`` (:class:`NB201Space`; answers are
:class:`~darts_lightning.NB201Arch` es). Add a space by subclassing :class:`SearchSpace` and registering it
(``@register_space("mine")``), or name its class path in a config.
"""

from darts_lightning.spaces.base import SPACES, SearchSpace, get_space, list_spaces, register_space
from darts_lightning.spaces.darts.rdarts import RDartsSpace
from darts_lightning.spaces.darts.space import DartsSpace
from darts_lightning.spaces.nasbench201 import NB201Space

__all__ = ["SearchSpace", "DartsSpace", "RDartsSpace", "NB201Space", "SPACES", "register_space", "list_spaces", "get_space"]
