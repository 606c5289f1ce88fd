"""The amortized neural posterior guide and its file format."""

from .posterior import NeuralPosterior, NotFittedError

__all__ = ["NeuralPosterior", "NotFittedError"]
