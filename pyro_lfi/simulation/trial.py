"""Reading a model's sites by running it once, before a campaign.

The trial run un-conditions the observed sites (but not ``pyro.deterministic`` ones, which
Pyro records as observed) and tells three kinds of sites apart: latents drawn from the prior,
data sites (simulators and formerly observed sites) and deterministic sites. A simulator whose
output shape is declared is not run at all. Otherwise trial runs are repeated at other seeds
until one simulation succeeds: a simulator that fails on most parameter sets is a campaign to
record, not a model to refuse. Only a model that raises outside its simulators is refused.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.uncondition_messenger import UnconditionMessenger
from pyro.poutine.util import prune_subsample_sites

from ..errors import ModelError, SimulatorNeverSucceeded
from ..model.schema import ModelSchema, SimulatorPlaceholders, is_simulator_site, simulator_of
from ..model.simulator import SimulatorShapeError
from ..seeding import derived_seed, seeded
from .deadline import Killed, call_with_deadline
from .fingerprint import code_identity, distribution_identity

__all__ = ["ModelError", "ModelLayout", "SimulatorNeverSucceeded", "read_layout", "uncondition"]

#: Key of the trial runs' seeds, apart from every batch index.
PROBE_KEY = 2**32 - 1
#: Trial runs in which the model itself (not a simulator) raises before it is refused.
MODEL_ATTEMPTS = 10
#: Trial runs (and seconds) spent looking for one successful simulation.
SIMULATOR_ATTEMPTS = 2000
SIMULATOR_SECONDS = 60.0


def uncondition(model, names: Sequence[str] | None):
    """``model`` with its observed sites (or only ``names``) sampled, deterministic sites kept."""

    class _Uncondition(UnconditionMessenger):
        def _pyro_sample(self, msg):
            if msg["infer"].get("_deterministic") or (names is not None and msg["name"] not in names):
                return
            super()._pyro_sample(msg)

    return _Uncondition()(model)


class _SimulatorRaised(Exception):
    """Carries an exception raised inside a simulator out of a trial run."""


class _SimulatorErrors(Messenger):
    """Runs simulator sites, marking their errors as the simulator's (not the model's)."""

    def _pyro_sample(self, msg):
        if msg["value"] is not None or not is_simulator_site(msg):
            return
        try:
            msg["value"] = msg["fn"](*msg["args"], **msg["kwargs"])
        except SimulatorShapeError:  # a mistake in the model, not a failed simulation
            raise
        except Exception as err:
            raise _SimulatorRaised(err) from err


@dataclass(frozen=True)
class ModelLayout:
    """What a trial run reads off a model (plain data, so it can come back from a child
    process): the schema, and per recorded site what determines its values (see
    :mod:`pyro_lfi.simulation.fingerprint`)."""

    schema: ModelSchema
    identities: dict[str, dict]

    @property
    def recorded(self) -> tuple[str, ...]:
        """Every site a campaign records: latents, simulated data, deterministic."""
        return self.schema.latents + self.schema.simulated + self.schema.deterministic

    @classmethod
    def of(cls, trace) -> ModelLayout:
        layout = cls(ModelSchema.of(trace), {})
        nodes = trace.nodes
        return cls(layout.schema, {n: _site_identity(nodes[n]) for n in layout.recorded})


def read_layout(model, seed: int, args, kwargs, isolate: bool = False, timeout: float | None = None) -> ModelLayout:
    """The layout of ``model`` from one trial run (see the module docstring). With ``isolate``
    each trial runs in a forked child (killed after ``timeout`` seconds, if given), so that a
    simulator that hangs or crashes its process costs a trial, not the caller."""
    with contextlib.suppress(Exception):
        return _attempt(model, seed, PROBE_KEY, True, args, kwargs, isolate, timeout)
    model_errors, simulator_errors, start = 0, 0, time.perf_counter()
    for attempt in range(SIMULATOR_ATTEMPTS):
        try:
            return _attempt(model, seed, PROBE_KEY - attempt, False, args, kwargs, isolate, timeout)
        except _SimulatorRaised as err:
            simulator_errors, last_simulator_error = simulator_errors + 1, err.__cause__ or err
        except SimulatorShapeError:
            raise
        except Exception as err:
            model_errors, last_model_error = model_errors + 1, err
        if model_errors >= MODEL_ATTEMPTS and not simulator_errors:
            raise ModelError(
                f"the model raised outside its simulators in each of {model_errors} trial runs, so no "
                f"simulation can succeed; last error: {type(last_model_error).__name__}: {last_model_error}"
            ) from last_model_error
        if attempt >= MODEL_ATTEMPTS and time.perf_counter() - start > SIMULATOR_SECONDS:
            break
    error = last_simulator_error if simulator_errors else last_model_error
    raise SimulatorNeverSucceeded(
        f"no trial simulation succeeded in {attempt + 1} attempts ({simulator_errors} raised in the simulator, "
        f"{model_errors} in the model), so the output shape of the model's data sites is unknown; last error: "
        f"{type(error).__name__}: {error}. Declare it, Simulator(fn, *params, event_shape=...), so that no "
        "trial run is needed and failing simulations are recorded row by row"
    ) from error


def _attempt(model, seed: int, key: int, placeholders: bool, args, kwargs, isolate: bool, timeout) -> ModelLayout:
    run = functools.partial(_layout, model, derived_seed(seed, key), placeholders, args, kwargs)
    if not isolate:
        return run()
    outcome = call_with_deadline(run, timeout)
    if isinstance(outcome, Killed):
        raise _SimulatorRaised(RuntimeError(f"trial simulation {outcome.reason}"))
    return outcome.value


def _layout(model, seed: int, placeholders: bool, args, kwargs) -> ModelLayout:
    if placeholders:  # declared output shapes need no simulation
        model = SimulatorPlaceholders(float("nan"), declared_only=True)(model)
    with seeded(seed), torch.no_grad():
        trace = poutine.trace(_SimulatorErrors()(model)).get_trace(*args, **kwargs)
    return ModelLayout.of(prune_subsample_sites(trace))


def _site_identity(site: dict) -> dict:
    """What about one site determines the rows: its shape and distribution or simulator."""
    identity = {"shape": list(site["value"].shape)}
    if is_simulator_site(site):
        simulator = simulator_of(site)
        identity["simulator"] = code_identity(simulator.fn)
        identity["batched"] = simulator.batched
    elif not site["infer"].get("_deterministic"):
        identity["distribution"] = distribution_identity(site["fn"])
    return identity
