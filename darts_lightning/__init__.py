"""darts_lightning: differentiable neural architecture search (DARTS and family) on PyTorch Lightning.

The package in layers, each importing only the ones below it:

* :mod:`darts_lightning.utils`: registries, components, files, distributed helpers;
* :mod:`darts_lightning.data`: the data modules;
* :mod:`darts_lightning.spaces`: search spaces (ops, edges, cells, supernets, answers and their networks);
* :mod:`darts_lightning.differentiable` (the DARTS family) and :mod:`darts_lightning.retrain` (training a
  derived network);
* :mod:`darts_lightning.discrete`: discrete searchers, evaluators and their module;
* :mod:`darts_lightning.entry`: the command line and the evaluation protocol.
"""

from darts_lightning.costs import CostModel, CostTable, MeasuredLatency, MultiplyAdds, Parameters
from darts_lightning.data import ClassificationDataModule, SearchDataModule
from darts_lightning.differentiable.budget import CostBudget
from darts_lightning.differentiable.callbacks import (
    AnswerFiles,
    ArchitectureFigures,
    CompileSupernet,
    HessianEigenvalue,
    SearchSummary,
)
from darts_lightning.differentiable.estimators import FirstOrderGradient, SecondOrderGradient
from darts_lightning.differentiable.module import DARTSSearch, NonFiniteLossError
from darts_lightning.differentiable.optimizers import ArchOptimizer, WeightOptimizer
from darts_lightning.differentiable.relaxations import list_relaxations, register_relaxation
from darts_lightning.differentiable.remedies import (
    AdversarialPerturbation,
    ArchWarmup,
    AuxiliarySkip,
    BetaDecay,
    RandomSmoothing,
    Remedy,
)
from darts_lightning.discrete.constraints import CostConstraint, CostObjective
from darts_lightning.discrete.fidelity import SuccessiveHalving
from darts_lightning.discrete.module import DiscreteSearch
from darts_lightning.discrete.ray_executor import RayExecutor
from darts_lightning.discrete.scratch import ScratchEvaluator
from darts_lightning.discrete.weight_sharing import SinglePathSupernet, WeightSharingEvaluator
from darts_lightning.retrain.module import ArchClassifier, ExportNetwork, GenotypeClassifier, NetworkClassifier, export_network
from darts_lightning.spaces import DartsSpace, NB201Space, RDartsSpace, SearchSpace, get_space, register_space
from darts_lightning.spaces.cell import Cell, GenotypeCell, SearchCell
from darts_lightning.spaces.darts.genotype import Genotype, GenotypeError
from darts_lightning.spaces.darts.network import AuxiliaryHead, EvalNetwork, build_eval_network
from darts_lightning.spaces.darts.supernet import SearchNetwork
from darts_lightning.spaces.edges import FixedEdge, MixedEdge
from darts_lightning.spaces.mixing import Relaxation
from darts_lightning.spaces.nasbench201 import NB201Arch, NB201Network, NB201Supernet
from darts_lightning.spaces.ops import DARTS_OPS, NB201_OPS, build_op, list_ops, register_op

__all__ = [
    "Cell", "GenotypeCell", "SearchCell", "SearchDataModule", "FixedEdge", "MixedEdge", "Genotype",
    "GenotypeError", "SearchNetwork", "DARTS_OPS", "NB201_OPS", "build_op", "list_ops", "register_op",
    "Relaxation", "list_relaxations", "register_relaxation", "DARTSSearch", "NonFiniteLossError",
    "AuxiliaryHead", "EvalNetwork", "build_eval_network", "ClassificationDataModule", "GenotypeClassifier",
    "ArchClassifier", "NetworkClassifier", "ExportNetwork", "export_network", "DiscreteSearch", "NB201Arch", "NB201Network",
    "RayExecutor", "SuccessiveHalving",
    "ScratchEvaluator", "SinglePathSupernet", "WeightSharingEvaluator",
    # the parts a search is composed of
    "SearchSpace", "DartsSpace", "RDartsSpace", "NB201Space", "NB201Supernet", "get_space", "register_space",
    "FirstOrderGradient", "SecondOrderGradient", "WeightOptimizer", "ArchOptimizer", "Remedy", "ArchWarmup",
    "AuxiliarySkip", "BetaDecay", "AnswerFiles", "ArchitectureFigures", "SearchSummary", "HessianEigenvalue",
    "CompileSupernet", "RandomSmoothing", "AdversarialPerturbation",
    # hardware-aware search
    "CostModel", "CostTable", "MultiplyAdds", "Parameters", "MeasuredLatency", "CostBudget", "CostConstraint",
    "CostObjective",
]

__version__ = "0.1.0"
