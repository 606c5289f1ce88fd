"""Neural network building blocks: embedding nets (MLP, recurrent, convolutional, DeepSet),
standardization and conditional density estimators (normalizing flows and mixture density
networks)."""

from .embeddings import CNNEmbedding, DeepSet, RNNEmbedding
from .estimator import ConditionalDensityEstimator
from .flows import Flow
from .mdn import MixtureDensityNetwork
from .missing import MissingFeatures
from .mlp import MLP
from .standardize import Standardize

__all__ = [
    "MLP",
    "CNNEmbedding",
    "ConditionalDensityEstimator",
    "DeepSet",
    "Flow",
    "MissingFeatures",
    "MixtureDensityNetwork",
    "RNNEmbedding",
    "Standardize",
]
