"""Neural network building blocks: embedding nets, standardization and conditional density
estimators (normalizing flows and mixture density networks)."""

from .estimator import ConditionalDensityEstimator
from .flows import Flow
from .mdn import MixtureDensityNetwork
from .missing import MissingFeatures
from .mlp import MLP
from .standardize import Standardize

__all__ = ["MLP", "ConditionalDensityEstimator", "Flow", "MissingFeatures", "MixtureDensityNetwork", "Standardize"]
