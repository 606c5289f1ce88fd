"""One batch of a model run forward: which sites to record and how, the vectorized run under a
plate, and the row-by-row fallbacks that keep the rows a failing simulator did not spoil."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites

from .deadline import Finished, call_with_deadline
from .seeding import derived_seed, seeded
from .simulations import Simulations, Status
from .simulator import DeclaredShapeError
from .sites import is_simulator_site, plate_depth, simulator_of

__all__ = ["BATCH_BYTES", "MIN_BATCHES", "BatchPlan"]

_PLATE = "_lfi_simulations"
#: Default batches hold at most this many bytes of site values ...
BATCH_BYTES = 32 * 2**20
#: ... and number at least this many when they run on workers, go to a store or have a timeout.
MIN_BATCHES = 64
_PROBE = 2**32 - 1  # key of the probe run's seed, apart from every batch index


@dataclass(frozen=True)
class BatchPlan:
    """What one run of the model looks like: which sites to record, their shapes, plate depth."""

    model: object
    latents: tuple[str, ...]
    data: tuple[str, ...]
    shapes: dict[str, torch.Size]
    batch_dims: dict[str, int]
    max_plate_nesting: int

    @classmethod
    def probe(cls, model, observed, seed: int, args, kwargs) -> BatchPlan:
        """Run the model once, un-vectorized, to read its sites."""
        names = [observed] if isinstance(observed, str) else observed
        free = poutine.uncondition(model) if names is None else _uncondition(model, names)
        trace = prune_subsample_sites(_probe_trace(free, seed, args, kwargs))
        latents, data, nesting = [], [], 0
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or site["infer"].get("is_auxiliary"):
                continue
            if site["infer"].get("was_observed") or is_simulator_site(site):
                data.append(name)
            else:
                latents.append(name)
            nesting = max(nesting, plate_depth(site))
        if names is not None:
            unknown = [n for n in names if n not in data]
            if unknown:
                raise ValueError(
                    f"observed site(s) {unknown} are not data sites of the model; "
                    f"its data sites are {data}, its latent sites {latents}"
                )
        if not data:
            raise ValueError(
                "the model has no data site: give the simulator output a site, "
                "pyro.sample('x', pyro_lfi.Simulator(fn, theta), obs=x)"
            )
        shapes = {n: trace.nodes[n]["value"].shape for n in latents + data}
        batch_dims = {n: plate_depth(trace.nodes[n]) for n in latents + data}
        return cls(free, tuple(latents), tuple(data), shapes, batch_dims, nesting)

    def check_parameters(self, parameters: dict, num_simulations: int) -> dict[str, torch.Tensor]:
        """Validate fixed latent values ``[num_simulations, *site_shape]``."""
        checked = {}
        for name, value in parameters.items():
            if name not in self.latents:
                raise ValueError(f"'{name}' is not a latent site of the model; latent sites: {self.latents}")
            value = torch.as_tensor(value, dtype=torch.get_default_dtype())
            expected = (num_simulations,) + tuple(self.shapes[name])
            if tuple(value.shape) != expected:
                raise ValueError(
                    f"parameters['{name}'] has shape {tuple(value.shape)}; expected {expected} "
                    f"(one row per simulation of the site's shape {tuple(self.shapes[name])})"
                )
            checked[name] = value
        return checked

    def _vectorized_shape(self, name: str, size: int) -> tuple[int, ...]:
        """Shape of site ``name`` under the simulation plate: rows, broadcast dims, own shape."""
        pad = self.max_plate_nesting - self.batch_dims[name]
        return (size,) + (1,) * pad + tuple(self.shapes[name])

    def _vectorized(self, size: int):
        return pyro.plate(_PLATE, size, dim=-self.max_plate_nesting - 1)(self.model)

    def run(self, size: int, seed: int, fixed: dict, args, kwargs) -> Simulations:
        fixed = {n: v.reshape(self._vectorized_shape(n, size)) for n, v in fixed.items()}
        tracer = poutine.trace(poutine.condition(self._vectorized(size), data=fixed))
        with seeded(seed), torch.no_grad():
            try:
                trace = tracer.get_trace(*args, **kwargs)
            except DeclaredShapeError:  # a mistake in the model, not a failed simulation
                raise
            except Exception:  # isolate the failing rows
                partial = {n: tracer.msngr.trace.nodes[n]["value"] for n in self.latents
                           if n in tracer.msngr.trace.nodes}
                return Simulations.concat(
                    [self._run_row(partial, i, args, kwargs) for i in range(size)]
                )
        values = {n: self._rows(n, trace.nodes[n]["value"], size) for n in self.latents + self.data}
        return self._assemble(values, size)

    def default_batch_size(self, num_simulations: int, spread: bool) -> int:
        """Rows per batch when none is given (see :func:`simulate`)."""
        row_bytes = sum(self.shapes[n].numel() for n in self.latents + self.data) * torch.get_default_dtype().itemsize
        rows = max(1, BATCH_BYTES // max(1, row_bytes))
        if spread:
            rows = min(rows, math.ceil(num_simulations / MIN_BATCHES))
        return min(rows, num_simulations)

    def manifest(self, seed: int, num_simulations: int, batch_size: int, parameters: dict) -> dict:
        """What identifies a campaign in a store: resuming with other values is refused."""
        digest = hashlib.sha256()
        for name in sorted(parameters):
            digest.update(name.encode() + parameters[name].numpy().tobytes())
        return {
            "seed": seed,
            "num_simulations": num_simulations,
            "batch_size": batch_size,
            "latent_sites": {n: list(self.shapes[n]) for n in self.latents},
            "data_sites": {n: list(self.shapes[n]) for n in self.data},
            "parameters_sha256": digest.hexdigest() if parameters else None,
        }

    def run_with_deadline(self, size: int, seed: int, fixed: dict, args, kwargs, timeout: float) -> Simulations:
        """:meth:`run` in a child process killed after ``timeout * size`` seconds; if killed, each
        row again in its own child with ``timeout`` seconds (rows seeded from ``(seed, row)``)."""
        outcome = call_with_deadline(functools.partial(self.run, size, seed, fixed, args, kwargs), timeout * size)
        if isinstance(outcome, Finished):
            return outcome.value
        partial = self._latents(size, seed, fixed, args, kwargs)
        rows = []
        for i in range(size):
            row = functools.partial(self._seeded_row, partial, i, derived_seed(seed, i), args, kwargs)
            outcome = call_with_deadline(row, timeout)
            if isinstance(outcome, Finished):
                rows.append(outcome.value)
            else:
                status = Status.TIMEOUT if outcome.timed_out else Status.EXCEPTION
                rows.append(self._failed_row(partial, i, status, outcome.reason))
        return Simulations.concat(rows)

    def _latents(self, size: int, seed: int, fixed: dict, args, kwargs) -> dict[str, torch.Tensor]:
        """The latent values :meth:`run` draws for a batch, without calling the simulator."""
        given = {n: v.reshape(self._vectorized_shape(n, size)) for n, v in fixed.items()}
        blank = {n: torch.full(self._vectorized_shape(n, size), float("nan")) for n in self.data}
        tracer = poutine.trace(poutine.condition(self._vectorized(size), data={**given, **blank}))
        with seeded(seed), torch.no_grad(), contextlib.suppress(Exception):
            tracer.get_trace(*args, **kwargs)
        nodes = tracer.msngr.trace.nodes
        return {n: nodes[n]["value"] for n in self.latents if n in nodes}

    def _seeded_row(self, partial: dict, i: int, seed: int, args, kwargs) -> Simulations:
        with seeded(seed), torch.no_grad():
            return self._run_row(partial, i, args, kwargs)

    def _failed_row(self, partial: dict, i: int, status: Status, message: str) -> Simulations:
        values = {
            n: self._rows(n, partial[n][i : i + 1], 1) if n in partial
            else torch.full((1,) + self.shapes[n], float("nan"))
            for n in self.latents + self.data
        }
        return self._assemble(values, 1, status, message)

    def _run_row(self, partial: dict, i: int, args, kwargs) -> Simulations:
        fixed = {n: v[i : i + 1] for n, v in partial.items()}
        tracer = poutine.trace(poutine.condition(self._vectorized(1), data=fixed))
        try:
            trace = tracer.get_trace(*args, **kwargs)
        except Exception as err:
            nodes = tracer.msngr.trace.nodes
            values = {
                n: self._rows(n, nodes[n]["value"], 1) if n in nodes and n not in self.data
                else torch.full((1,) + self.shapes[n], float("nan"))
                for n in self.latents + self.data
            }
            message = f"{type(err).__name__}: {err}"
            return self._assemble(values, 1, Status.EXCEPTION, message)
        return self._assemble({n: self._rows(n, trace.nodes[n]["value"], 1)
                               for n in self.latents + self.data}, 1)

    def _rows(self, name: str, value: torch.Tensor, size: int) -> torch.Tensor:
        shape = (size,) + self.shapes[name]
        if value.numel() != torch.Size(shape).numel():
            raise ValueError(
                f"site '{name}' has shape {tuple(value.shape)} when simulated {size} at a time, but "
                f"shape {tuple(self.shapes[name])} alone: its distribution must broadcast over "
                "pyro.plate batch dims (declare per-simulation dims with .to_event)"
            )
        return value.reshape(shape).to(torch.get_default_dtype())

    def _assemble(self, values: dict, size: int, status: Status = Status.OK, message: str = "") -> Simulations:
        codes = torch.full((size,), int(status), dtype=torch.int8)
        messages = None if status == Status.OK else np.full(size, message, dtype=object)
        # a finite sum means every entry is finite (NaN and inf propagate): one cheap pass when all is well
        outputs = [values[n] for n in self.data] if status == Status.OK else []
        suspects = [v for v in outputs if not torch.isfinite(v.sum())]
        if suspects:
            finite = torch.ones(size, dtype=torch.bool)
            for v in suspects:
                finite &= torch.isfinite(v.reshape(size, -1)).all(-1)
            codes[~finite] = int(Status.NONFINITE)
            messages = np.where((~finite).numpy(), "non-finite simulator output", "").astype(object)
        return Simulations(values, self.latents, self.data, codes, messages)


class _DeclaredShapes(Messenger):
    """Simulator sites with a declared ``event_shape`` yield NaN of their shape instead of
    simulating: enough to read the model's sites without paying for a simulation."""

    def _pyro_sample(self, msg):
        if msg["value"] is None and is_simulator_site(msg) and simulator_of(msg).declared_event_shape is not None:
            msg["value"] = torch.full(msg["fn"].shape(), float("nan"))


def _probe_trace(model, seed: int, args, kwargs, attempts: int = 10):
    """One un-vectorized run of ``model``, without simulating where the simulator's output shape
    is declared (unless the model then fails on the placeholder); retried at other seeds if the
    simulator raises."""
    with seeded(derived_seed(seed, _PROBE)), torch.no_grad(), contextlib.suppress(Exception):
        return poutine.trace(_DeclaredShapes()(model)).get_trace(*args, **kwargs)
    for attempt in range(attempts):
        with seeded(derived_seed(seed, _PROBE - attempt)), torch.no_grad():
            try:
                return poutine.trace(model).get_trace(*args, **kwargs)
            except Exception as err:
                error = err
    raise RuntimeError(
        f"the model raised in each of {attempts} trial runs, so no simulation can succeed; last error: "
        f"{type(error).__name__}: {error}"
    ) from error


def _uncondition(model, names: Sequence[str]):
    """``poutine.uncondition`` restricted to the sites ``names``."""

    class _Selective(poutine.uncondition_messenger.UnconditionMessenger):
        def _pyro_sample(self, msg):
            if msg["name"] in names:
                super()._pyro_sample(msg)

    return _Selective()(model)
