"""darts_lightning: differentiable neural architecture search (DARTS and family) on PyTorch Lightning."""

from .cell import Cell, GenotypeCell, SearchCell
from .data import SearchDataModule
from .edges import FixedEdge, MixedEdge
from .genotype import Genotype, GenotypeError
from .network import SearchNetwork
from .ops import DARTS_OPS, NB201_OPS, build_op, list_ops, register_op
from .relaxations import Relaxation, list_relaxations, register_relaxation
from .search import DARTSSearch, NonFiniteLossError

__all__ = [
    "Cell", "GenotypeCell", "SearchCell", "SearchDataModule", "FixedEdge", "MixedEdge", "Genotype",
    "GenotypeError", "SearchNetwork", "DARTS_OPS", "NB201_OPS", "build_op", "list_ops", "register_op",
    "Relaxation", "list_relaxations", "register_relaxation", "DARTSSearch", "NonFiniteLossError",
]

__version__ = "0.1.0"
