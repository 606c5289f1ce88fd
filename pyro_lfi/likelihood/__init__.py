"""Learned likelihoods of Simulator sites, and the model with them in place of the simulators."""

from .neural_likelihood import LearnedLikelihood, NeuralLikelihood
from .neural_ratio import NeuralRatio, RatioLikelihood
from .surrogate import surrogate

__all__ = ["LearnedLikelihood", "NeuralLikelihood", "NeuralRatio", "RatioLikelihood", "surrogate"]
