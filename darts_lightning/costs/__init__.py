"""What an architecture costs: parameters, multiply-adds (and, measured, latency), per candidate op and for
whole networks, for the hardware-aware searches."""

from darts_lightning.costs.latency import MeasuredLatency, load_latency_table, profile_space, save_latency_table, validate_latency
from darts_lightning.costs.models import COST_MODELS, CostModel, MultiplyAdds, Parameters, get_cost_model, list_cost_models
from darts_lightning.costs.table import CostTable

__all__ = [
    "CostTable", "MeasuredLatency", "load_latency_table", "profile_space", "save_latency_table", "validate_latency",
    "COST_MODELS", "CostModel", "MultiplyAdds", "Parameters", "get_cost_model", "list_cost_models",
]
