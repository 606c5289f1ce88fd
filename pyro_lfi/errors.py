"""Every exception pyro_lfi raises on purpose, under one base class.

``except pyro_lfi.LFIError`` catches them all; each also derives from the built-in exception a
user would expect (``ValueError`` for bad input, ``RuntimeError`` for a state that cannot go on,
``NotImplementedError`` for a likelihood that does not exist), so existing handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "CampaignMismatchError",
    "DeclaredShapeError",
    "GaussianDivisionError",
    "LFIError",
    "ModelError",
    "NotFittedError",
    "ObservationError",
    "ProposalError",
    "SimulatorLikelihoodError",
    "SimulatorNeverSucceeded",
    "SimulatorShapeError",
    "SiteError",
    "StoreInUseError",
    "UnsupportedPriorError",
]


class LFIError(Exception):
    """The base of every pyro_lfi exception."""


def shortened(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (with "..."), to quote a value in a message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- the model and its simulators -------------------------------------------------------------------


class SimulatorLikelihoodError(LFIError, NotImplementedError):
    """Raised when something asks a :class:`~pyro_lfi.Simulator` site for its likelihood."""


class SimulatorShapeError(LFIError, ValueError):
    """Raised when a simulator returns an output of an unexpected shape."""


class DeclaredShapeError(SimulatorShapeError):
    """The simulator's outputs do not have the ``event_shape`` declared for them: a mistake in the
    model, raised at once rather than recorded as failed simulations."""


class SimulatorNeverSucceeded(SimulatorShapeError):
    """No trial simulation succeeded, so the output shape of an undeclared simulator is unknown."""


class ModelError(LFIError, RuntimeError):
    """The model raised outside its simulators in every trial run: no simulation can succeed."""


class SiteError(LFIError, ValueError):
    """A model's sites do not fit what pyro_lfi needs (unknown name, discrete latent, ...)."""


class UnsupportedPriorError(SiteError):
    """A method needs a prior of a form the model's prior does not have."""


class ObservationError(LFIError, ValueError):
    """An observation is missing or does not have the shape the simulator produces."""


# -- campaigns on disk ------------------------------------------------------------------------------


class CampaignMismatchError(LFIError, ValueError):
    """Raised when a store on disk holds a different campaign than the one asked for."""


class StoreInUseError(LFIError, RuntimeError):
    """Raised when another process is running a campaign in the same store."""


# -- estimators and sequential methods --------------------------------------------------------------


class NotFittedError(LFIError, RuntimeError):
    """The guide has not been built from simulations yet (train it first)."""


class ProposalError(LFIError, RuntimeError):
    """A proposal could not produce the requested samples within its budget."""


class GaussianDivisionError(LFIError, ValueError):
    """A mixture component is not narrower than the Gaussian it is divided by."""
