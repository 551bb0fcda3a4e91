"""darts_lightning: differentiable neural architecture search (DARTS and family) on PyTorch Lightning."""

from .cell import Cell, GenotypeCell, SearchCell
from .data import ClassificationDataModule, SearchDataModule
from .discrete import DiscreteSearch
from .edges import FixedEdge, MixedEdge
from .eval_network import AuxiliaryHead, EvalNetwork, build_eval_network
from .genotype import Genotype, GenotypeError
from .nasbench201 import NB201Arch, NB201Network
from .network import SearchNetwork
from .ops import DARTS_OPS, NB201_OPS, build_op, list_ops, register_op
from .relaxations import Relaxation, list_relaxations, register_relaxation
from .retrain import GenotypeClassifier, export_network
from .search import DARTSSearch, NonFiniteLossError
from .weight_sharing import ScratchEvaluator, SinglePathSupernet, WeightSharingEvaluator

__all__ = [
    "Cell", "GenotypeCell", "SearchCell", "SearchDataModule", "FixedEdge", "MixedEdge", "Genotype",
    "GenotypeError", "SearchNetwork", "DARTS_OPS", "NB201_OPS", "build_op", "list_ops", "register_op",
    "Relaxation", "list_relaxations", "register_relaxation", "DARTSSearch", "NonFiniteLossError",
    "AuxiliaryHead", "EvalNetwork", "build_eval_network", "ClassificationDataModule", "GenotypeClassifier",
    "export_network", "DiscreteSearch", "NB201Arch", "NB201Network", "ScratchEvaluator", "SinglePathSupernet",
    "WeightSharingEvaluator",
]

__version__ = "0.1.0"
