"""The prior, the simulator and the Pyro model, with a plate over trials."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor

from ...errors import ObservationError
from ...model.simulator import Simulator
from .dynamics import DEFAULT_PROTOCOL, Protocol, simulate
from .features import FEATURE_NAMES, observation, spike_features

__all__ = [
    "PARAMETER_NAMES",
    "integrate_and_fire_model",
    "integrate_and_fire_prior",
    "integrate_and_fire_simulator",
    "pad_trials",
    "variable_trials_model",
]

#: The latent sites of :func:`integrate_and_fire_model`, in the simulator's parameter order.
PARAMETER_NAMES = ("tau", "e_leak", "delta_t", "v_t", "sigma")
#: Their units.
PARAMETER_UNITS = ("ms", "mV", "mV", "mV", "mV")


def integrate_and_fire_prior() -> dict[str, dist.Distribution]:
    """Uniform priors: :math:`\\tau` 5-30 ms, :math:`E_L` -75 to -60 mV, :math:`\\Delta_T` 0.5-4
    mV, :math:`V_T` -55 to -45 mV, :math:`\\sigma` 0.5-5 mV. Under the default protocol's 25 mV step
    the neuron is driven past threshold on most of the prior, and fires from the noise elsewhere."""
    bounds = {"tau": (5.0, 30.0), "e_leak": (-75.0, -60.0), "delta_t": (0.5, 4.0), "v_t": (-55.0, -45.0),
              "sigma": (0.5, 5.0)}
    return {name: dist.Uniform(low, high) for name, (low, high) in bounds.items()}


def integrate_and_fire_simulator(tau: Tensor, e_leak: Tensor, delta_t: Tensor, v_t: Tensor, sigma: Tensor, *,
                                 protocol: Protocol = DEFAULT_PROTOCOL, dequantize: bool = True) -> Tensor:
    """One trial per parameter set: parameters ``[N]`` each to the observation ``[N, 4]``
    (:data:`FEATURE_NAMES`, :func:`observation` of :func:`spike_features`), noise from torch's RNG."""
    params = torch.stack(torch.broadcast_tensors(tau, e_leak, delta_t, v_t, sigma), -1)
    return observation(spike_features(simulate(params, protocol=protocol), protocol), protocol, dequantize)


class _Simulate:
    """:func:`integrate_and_fire_simulator` with its protocol bound (picklable)."""

    def __init__(self, protocol: Protocol, dequantize: bool):
        self.protocol, self.dequantize = protocol, dequantize

    def __call__(self, *params: Tensor) -> Tensor:
        return integrate_and_fire_simulator(*params, protocol=self.protocol, dequantize=self.dequantize)


def integrate_and_fire_model(x: Tensor | None = None, *, num_trials: int = 10,
                             protocol: Protocol = DEFAULT_PROTOCOL, dequantize: bool = True) -> Tensor:
    """Pyro model: the 5 parameters (:data:`PARAMETER_NAMES`) from :func:`integrate_and_fire_prior`,
    then ``num_trials`` iid trials under ``pyro.plate("trials", num_trials)``, each
    ``x ~ Simulator(integrate_and_fire_simulator, *params)``: ``x`` is ``[num_trials, 4]``.

    Train a learned single-trial likelihood on ``num_trials=1`` and score any number of trials
    with it (``lfi.surrogate``); NPE reads ``[num_trials, 4]`` through a ``DeepSet``.
    """
    if not isinstance(num_trials, int) or num_trials < 1:
        raise ValueError(f"integrate_and_fire_model: num_trials must be a positive int, got {num_trials!r}")
    if x is not None and tuple(x.shape[-2:]) != (num_trials, len(FEATURE_NAMES)):
        raise ObservationError(
            f"integrate_and_fire_model: the observation at site 'x' has shape {tuple(x.shape)}, expected "
            f"[..., {num_trials}, {len(FEATURE_NAMES)}] (num_trials={num_trials} trials of {FEATURE_NAMES}): "
            "pass num_trials=len(x)"
        )
    params = [pyro.sample(name, prior) for name, prior in integrate_and_fire_prior().items()]
    with pyro.plate("trials", num_trials):
        simulator = Simulator(_Simulate(protocol, dequantize), *params, event_shape=(len(FEATURE_NAMES),))
        return pyro.sample("x", simulator, obs=x)


def pad_trials(x: Tensor, max_trials: int) -> Tensor:
    """Trials ``x [..., n, 4]`` padded with NaN trials to ``[..., max_trials, 4]``: how
    :func:`variable_trials_model` observes ``n <= max_trials`` trials."""
    n = x.shape[-2]
    if n > max_trials:
        raise ValueError(f"pad_trials: {n} trials do not fit in max_trials={max_trials}")
    padding = torch.full((*x.shape[:-2], max_trials - n, x.shape[-1]), torch.nan, dtype=x.dtype, device=x.device)
    return torch.cat([x, padding], -2)


class _VariableTrials:
    """``max_trials`` trials per parameter set, of which a uniform number in ``[min_trials,
    max_trials]`` is kept and the rest NaN (picklable)."""

    def __init__(self, min_trials: int, max_trials: int, protocol: Protocol, dequantize: bool):
        self.min_trials, self.max_trials = min_trials, max_trials
        self.protocol, self.dequantize = protocol, dequantize

    def __call__(self, *params: Tensor) -> Tensor:
        params = torch.broadcast_tensors(*params)
        repeated = [p.unsqueeze(-1).expand(-1, self.max_trials).reshape(-1) for p in params]
        x = integrate_and_fire_simulator(*repeated, protocol=self.protocol, dequantize=self.dequantize)
        x = x.reshape(len(params[0]), self.max_trials, len(FEATURE_NAMES))
        kept = torch.randint(self.min_trials, self.max_trials + 1, (len(x), 1))
        return torch.where((torch.arange(self.max_trials) < kept).unsqueeze(-1), x, torch.nan)


def variable_trials_model(x: Tensor | None = None, *, max_trials: int = 10, min_trials: int = 1,
                          protocol: Protocol = DEFAULT_PROTOCOL, dequantize: bool = True) -> Tensor:
    """Pyro model for one amortized NPE guide over a variable number of trials: the parameters of
    :func:`integrate_and_fire_model`, then ``x [max_trials, 4]``, whose first ``n`` rows are iid
    trials and the rest NaN, with ``n`` uniform on ``min_trials..max_trials`` in each simulation
    (independent of the parameters, so the posterior given the ``n`` trials is that of
    ``integrate_and_fire_model(num_trials=n)``). Train ``NeuralPosterior(..., missing="impute")``
    with a ``DeepSet((max_trials, 4), k, missing_indicator=True)``, and condition it on
    ``pad_trials(x_o, max_trials)``.
    """
    if not (isinstance(min_trials, int) and isinstance(max_trials, int) and 1 <= min_trials <= max_trials):
        raise ValueError(
            f"variable_trials_model needs ints 1 <= min_trials <= max_trials, got {min_trials!r} and {max_trials!r}"
        )
    shape = (max_trials, len(FEATURE_NAMES))
    if x is not None and tuple(x.shape[-2:]) != shape:
        raise ObservationError(
            f"variable_trials_model: the observation at site 'x' has shape {tuple(x.shape)}, expected "
            f"[..., {max_trials}, {len(FEATURE_NAMES)}]: pad n trials with pad_trials(x, {max_trials})"
        )
    params = [pyro.sample(name, prior) for name, prior in integrate_and_fire_prior().items()]
    simulator = _VariableTrials(min_trials, max_trials, protocol, dequantize)
    return pyro.sample("x", Simulator(simulator, *params, event_shape=shape), obs=x)
