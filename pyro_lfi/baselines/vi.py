r"""Amortized variational inference (VAE-style) with the same neural guide NPE trains.

On a tractable version of the model, the guide :math:`q_\phi(\theta \mid x)` is trained by
maximizing the evidence lower bound averaged over observations :math:`x_i` of the training set,

.. math:: \mathcal{L}(\phi) = \frac1B \sum_{i \in \text{batch}}
    \mathbb{E}_{q_\phi(\theta \mid x_i)}\bigl[\log p(x_i \mid \theta) + \log p(\theta)
    - \log q_\phi(\theta \mid x_i)\bigr],

i.e. the reverse KL :math:`\mathrm{KL}(q \,\|\, p(\theta \mid x))` from the likelihood, where NPE
minimizes the forward KL from simulations: a like-for-like comparison of one architecture
(amortized inference as in Speiser et al. 2017). Training is Pyro's own
:class:`~pyro.infer.SVI` with :class:`~pyro.infer.Trace_ELBO` (reparameterized draws of the flow)
and :class:`~pyro.optim.ClippedAdam`. The guide is a :class:`~pyro.nn.PyroModule`, so its weights
enter the param store when it runs; training happens in a scope of the param store of its own,
so other guides' weights neither leak in nor are overwritten.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import ClippedAdam

from ..arviz import to_inference_data
from ..arviz_compat import Result, set_attrs
from ..errors import SiteError
from ..guide.posterior import NeuralPosterior
from ..model.schema import read_schema
from ..seeding import preserved_rng, seeded
from ..simulation.simulations import Simulations
from .tractable import Likelihood, tractable

__all__ = ["AmortizedVI", "amortized_vi"]


@dataclass
class AmortizedVI:
    """A guide trained by amortized VI: export its posterior at any observation.

    :ivar guide: the trained :class:`~pyro_lfi.NeuralPosterior`.
    :ivar losses: the negative ELBO per step (averaged over the step's observations).
    :ivar training_time: wall time of training in seconds.
    """

    guide: NeuralPosterior
    losses: list[float] = field(default_factory=list)
    training_time: float = 0.0

    def to_inference_data(self, *args, **kwargs) -> Result:
        """:func:`pyro_lfi.to_inference_data` of the trained guide (same arguments), with
        ``training_time`` in the posterior's attributes."""
        result = to_inference_data(self.guide, *args, **kwargs)
        set_attrs(result, "posterior", {"training_time": self.training_time})
        return result


def _check_keywords(model: Callable, names: tuple[str, ...]) -> None:
    """A :class:`SiteError` unless ``model`` takes every observed site ``names`` as a keyword."""
    try:
        parameters = inspect.signature(model).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins, C callables
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    missing = [n for n in names if n not in parameters]
    if missing:
        raise SiteError(
            f"amortized_vi passes each observation to the model as a keyword argument named after "
            f"its observed site, but the model takes no argument {missing}: write it as "
            f"def model(..., {missing[0]}=None): ... pyro.sample('{missing[0]}', ..., obs={missing[0]})"
        )


def amortized_vi(
    model: Callable,
    guide: NeuralPosterior,
    data: Simulations,
    *args,
    likelihood: Likelihood | None = None,
    num_steps: int = 2000,
    batch_size: int = 128,
    num_particles: int = 1,
    lr: float = 3e-3,
    final_lr_ratio: float = 0.1,
    clip_norm: float = 5.0,
    seed: int | None = 0,
    **kwargs,
) -> AmortizedVI:
    """Train ``guide`` with :class:`~pyro.infer.Trace_ELBO` on ``model`` made tractable by
    ``likelihood`` (see :func:`~pyro_lfi.baselines.tractable`; ``None`` if ``model`` already
    scores), over the observations of the valid rows of ``data``.

    ``data`` also builds the guide if it is not built yet (standardization, shapes), exactly as
    NPE would. Each step draws ``batch_size`` observations, runs model and guide vectorized over
    them in a plate (to the left of the model's own plates) and takes an :class:`~pyro.infer.SVI`
    step on the negative ELBO averaged over them, with :class:`~pyro.optim.ClippedAdam`
    (each gradient element clipped to ``±clip_norm``). The observations
    reach model and guide as keyword arguments named after the observed sites, so the model
    must take them that way (``model(x=None)``).

    :param lr: Adam's initial learning rate, decayed exponentially to ``lr * final_lr_ratio``
        at the last step (single-draw ELBO gradients are noisy; the decay lets the guide settle).
    :param seed: seeds the guide's initial weights (when built here), the batches and the draws;
        the global RNG state is restored afterwards.
    """
    runnable = model if likelihood is None else tractable(model, likelihood)
    observed = guide.observed
    _check_keywords(model, observed)
    valid = data[data.valid]
    if len(valid) == 0:
        raise ValueError(f"no valid rows in data to train on: {data.summary()}")
    with preserved_rng(), seeded(seed):
        if not guide.is_built:
            guide.build(data, *args, **kwargs)
        depth = _plate_nesting(guide, runnable, args, {**{n: valid.values[n][0] for n in observed}, **kwargs})
        optim = ClippedAdam({"lr": lr, "clip_norm": clip_norm, "lrd": final_lr_ratio ** (1.0 / max(num_steps, 1))})
        elbo = Trace_ELBO(num_particles=num_particles, max_plate_nesting=depth + 1)
        svi = SVI(
            _vectorized(runnable, observed, depth, args, kwargs),
            _vectorized(guide, observed, depth, args, kwargs),
            optim,
            elbo,
        )
        losses, elapsed = _train(svi, guide, valid, observed, num_steps, batch_size)
    return AmortizedVI(guide, losses, elapsed)


def _plate_nesting(guide: NeuralPosterior, model: Callable, args: tuple, kwargs: dict[str, Any]) -> int:
    """How many plate dims the model's sites use (the plate over observations goes to their
    left): from the schema the guide read, or from one run of ``model`` for a guide saved
    before guides kept it."""
    schema = guide.require_built().schema
    return (schema or read_schema(model, args, kwargs)).max_plate_nesting


def _vectorized(
    fn: Callable, observed: tuple[str, ...], depth: int, args: tuple, kwargs: dict[str, Any]
) -> Callable[[dict[str, torch.Tensor]], Any]:
    """``fn`` called on a batch of observations ``{name: [batch, ...]}`` at once: in a plate at
    dim ``-depth - 1``, scaled by ``1 / batch`` (the ELBO averaged over the observations)."""

    def wrapped(batch: dict[str, torch.Tensor]) -> Any:
        size = len(batch[observed[0]])
        with pyro.plate("_lfi_observations", size, dim=-depth - 1), poutine.scale(scale=1.0 / size):
            return fn(*args, **batch, **kwargs)

    return wrapped


def _train(
    svi: SVI, guide: NeuralPosterior, valid: Simulations, observed: tuple[str, ...], num_steps: int, batch_size: int
) -> tuple[list[float], float]:
    """``num_steps`` SVI steps on random batches of ``valid`` rows, in a param store scope of their
    own; returns the losses and the wall time."""
    losses = []
    guide.train()
    start = time.perf_counter()
    with pyro.get_param_store().scope():
        for _ in range(num_steps):
            rows = torch.randint(len(valid), (batch_size,))
            losses.append(svi.step({n: valid.values[n][rows] for n in observed}))
    elapsed = time.perf_counter() - start
    guide.eval()
    return losses, elapsed
