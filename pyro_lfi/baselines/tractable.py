r"""A tractable version of a simulator model: each :class:`~pyro_lfi.Simulator` site replaced by a
distribution that can score, as a Pyro effect handler (the user's model is not edited).

``likelihood={"x": lambda theta: dist.Normal(theta @ A.T, 0.3).to_event(1)}`` maps a simulator
site's name to a factory that receives the simulator's parameters (``Simulator(fn, *params)``'s
``params``, exactly as the model passed them) and returns :math:`p(x \mid \theta)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from pyro.distributions import Distribution
from pyro.poutine.messenger import Messenger

from ..errors import SiteError
from ..model.schema import is_simulator_site, unwrap_distribution

__all__ = ["TractableMessenger", "TractableModel", "tractable"]

Likelihood = Mapping[str, Callable[..., Distribution]]


class TractableMessenger(Messenger):
    """Replaces the distribution of every Simulator site by ``likelihood[name](*params)``,
    broadcast with the site's batch shape (its plates; plates entered outside this handler,
    such as a vectorized :class:`~pyro.infer.Predictive`'s, expand it afterwards)."""

    def __init__(self, likelihood: Likelihood):
        if not isinstance(likelihood, Mapping):
            raise TypeError(
                "likelihood must be a dict mapping each Simulator site's name to a distribution "
                "factory, e.g. {'x': lambda theta: dist.Normal(theta, 1.0).to_event(1)}"
            )
        super().__init__()
        self.likelihood = dict(likelihood)

    def _process_message(self, msg: dict) -> None:
        if not is_simulator_site(msg):
            return
        name = msg["name"]
        if name not in self.likelihood:
            raise SiteError(
                f"Simulator site '{name}' has no tractable likelihood: pass likelihood={{'{name}': "
                "lambda *params: <a Pyro distribution of the data given the simulator's params>}"
            )
        simulator = unwrap_distribution(msg["fn"])
        fn = self.likelihood[name](*simulator.params)
        if not isinstance(fn, Distribution):
            raise TypeError(f"likelihood['{name}'] returned {type(fn).__name__}, not a Pyro distribution")
        try:
            batch_shape = torch.broadcast_shapes(fn.batch_shape, msg["fn"].batch_shape)
        except RuntimeError as err:
            raise SiteError(
                f"likelihood['{name}'] has batch shape {tuple(fn.batch_shape)}, which does not "
                f"broadcast with the site's batch shape {tuple(msg['fn'].batch_shape)}: give it event "
                "dims with .to_event(...) so that only the plates are batch dims"
            ) from err
        if fn.batch_shape != batch_shape:
            fn = fn.expand(batch_shape)
        value = msg["value"]
        if isinstance(value, torch.Tensor):
            event = value.shape[value.dim() - len(fn.event_shape) :]
            if tuple(event) != tuple(fn.event_shape) or value.dim() > len(batch_shape) + len(event):
                raise SiteError(
                    f"likelihood['{name}'] has batch shape {tuple(batch_shape)} and event shape "
                    f"{tuple(fn.event_shape)}, which do not fit the value of shape "
                    f"{tuple(value.shape)} at site '{name}': declare the data's dims as event "
                    "dims with .to_event(...)"
                )
        msg["fn"] = fn


class TractableModel:
    """``model`` run under :class:`TractableMessenger` (a picklable callable, so that
    multi-process MCMC chains can ship it when ``model`` and the factories pickle)."""

    def __init__(self, model: Callable, likelihood: Likelihood):
        TractableMessenger(likelihood)  # validate early
        self.model, self.likelihood = model, dict(likelihood)

    def __call__(self, *args, **kwargs):
        with TractableMessenger(self.likelihood):
            return self.model(*args, **kwargs)


def tractable(model: Callable, likelihood: Likelihood) -> TractableModel:
    """``model`` with its Simulator sites replaced by the tractable ``likelihood``; a model that
    Pyro's likelihood-based inference (NUTS, SVI) can run on."""
    return TractableModel(model, likelihood)
