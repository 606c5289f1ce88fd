"""Learned likelihoods of Simulator sites, and the model with them in place of the simulators."""

from .neural_likelihood import LearnedLikelihood, NeuralLikelihood
from .surrogate import surrogate

__all__ = ["LearnedLikelihood", "NeuralLikelihood", "surrogate"]
