"""Neural network building blocks: embedding nets (MLP, MLP with a linear shortcut, recurrent, convolutional, DeepSet),
standardization and conditional density estimators (normalizing flows and mixture density
networks)."""

from .embeddings import CNNEmbedding, DeepSet, RNNEmbedding
from .estimator import ConditionalDensityEstimator
from .flows import Flow
from .mdn import MixtureDensityNetwork
from .missing import MissingFeatures
from .mixed import MixedDensityEstimator
from .mlp import MLP, SkipMLP
from .standardize import Standardize

__all__ = [
    "MLP",
    "CNNEmbedding",
    "ConditionalDensityEstimator",
    "DeepSet",
    "Flow",
    "MissingFeatures",
    "MixedDensityEstimator",
    "MixtureDensityNetwork",
    "RNNEmbedding",
    "SkipMLP",
    "Standardize",
]
