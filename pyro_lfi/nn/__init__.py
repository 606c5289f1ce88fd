"""Neural network building blocks: embedding nets (MLP, MLP with a linear shortcut, recurrent, convolutional, DeepSet),
standardization and conditional density estimators (normalizing flows, mixture density
networks, the ODE estimators of flow matching and score matching, and ensembles of any of them)."""

from .embeddings import CNNEmbedding, DeepSet, RNNEmbedding
from .ensemble import Ensemble, UniformMixture
from .estimator import ConditionalDensityEstimator
from .flow_matching import FlowMatching
from .flows import Flow
from .mdn import MixtureDensityNetwork
from .missing import MissingFeatures
from .mixed import MixedDensityEstimator
from .mlp import MLP, SkipMLP
from .score_matching import ScoreMatching
from .standardize import Standardize

__all__ = [
    "MLP",
    "CNNEmbedding",
    "ConditionalDensityEstimator",
    "DeepSet",
    "Ensemble",
    "Flow",
    "FlowMatching",
    "MissingFeatures",
    "MixedDensityEstimator",
    "MixtureDensityNetwork",
    "RNNEmbedding",
    "ScoreMatching",
    "SkipMLP",
    "Standardize",
    "UniformMixture",
]
