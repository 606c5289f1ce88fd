"""One batch of a model run forward: which sites to record and how, the vectorized run under a
plate, and the row-by-row fallbacks that keep the rows a failing simulator did not spoil."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pyro import poutine

from ..errors import SiteError
from ..model.schema import ModelSchema
from ..model.simulator import DeclaredShapeError
from ..seeding import derived_seed, seeded
from .deadline import Finished, call_with_deadline
from .fingerprint import code_identity, describe
from .simulations import Simulations, Status
from .trial import ModelLayout, read_layout, uncondition

__all__ = ["BATCH_BYTES", "MIN_BATCHES", "MIN_BATCH_ROWS", "BatchPlan"]

_PLATE = "_lfi_simulations"
#: Default batches hold at most this many bytes of site values ...
BATCH_BYTES = 32 * 2**20
#: ... number at least this many, so that they spread over workers and a store resumes finely ...
MIN_BATCHES = 64
#: ... unless that would make them smaller than this many rows, for vectorized simulators.
MIN_BATCH_ROWS = 4096


@dataclass(frozen=True)
class BatchPlan:
    """What one run of the model looks like: which sites to record, their shapes, plate depth,
    and what determines its rows (:attr:`fingerprint`)."""

    model: object
    layout: ModelLayout
    fingerprint: dict

    @classmethod
    def probe(cls, model, observed, seed: int, args, kwargs, isolate: bool = False, timeout=None) -> BatchPlan:
        """Run the model once, un-vectorized, to read its sites (see :mod:`pyro_lfi.simulation.trial`;
        with ``isolate``, trial runs happen in child processes killed after ``timeout`` seconds)."""
        names = [observed] if isinstance(observed, str) else observed
        free = uncondition(model, names)
        layout = read_layout(free, seed, args, kwargs, isolate, timeout)
        schema = layout.schema
        if names is not None:
            unknown = [n for n in names if n not in schema.simulated]
            if unknown:
                raise SiteError(
                    f"observed site(s) {unknown} are not data sites of the model; "
                    f"its data sites are {list(schema.simulated)}, its latent sites {list(schema.latents)}"
                )
        if not schema.simulated:
            raise SiteError(
                "the model has no data site: give the simulator output a site, "
                "pyro.sample('x', pyro_lfi.Simulator(fn, theta), obs=x)"
            )
        fingerprint = {
            "model": code_identity(model),
            "arguments": describe({"args": list(args), "kwargs": kwargs}),
            "sites": layout.identities,
        }
        return cls(free, layout, fingerprint)

    def check_parameters(self, parameters: dict, num_simulations: int) -> dict[str, torch.Tensor]:
        """Validate fixed latent values ``[num_simulations, *site_shape]``."""
        checked = {}
        for name, value in parameters.items():
            if name not in self.schema.latents:
                raise SiteError(f"'{name}' is not a latent site of the model; latent sites: {self.schema.latents}")
            value = torch.as_tensor(value, dtype=torch.get_default_dtype())
            expected = (num_simulations,) + tuple(self.schema.shapes[name])
            if tuple(value.shape) != expected:
                raise SiteError(
                    f"parameters['{name}'] has shape {tuple(value.shape)}; expected {expected} "
                    f"(one row per simulation of the site's shape {tuple(self.schema.shapes[name])})"
                )
            checked[name] = value
        return checked

    @property
    def schema(self) -> ModelSchema:
        return self.layout.schema

    def _vectorized(self, size: int, fixed: dict):
        """The model under a plate of ``size`` rows, with latent values ``fixed`` ([size, *shape])."""
        return self.schema.vectorize(self.model, size, _PLATE, fixed)

    def run(self, size: int, seed: int, fixed: dict, args, kwargs) -> Simulations:
        """Simulate ``size`` rows vectorized under ``seed``; if the simulator raises, every row
        again on its own with the latents already drawn, so that only failing rows are lost."""
        with seeded(seed), torch.no_grad():
            with poutine.trace() as tracer:
                try:
                    self._vectorized(size, fixed)(*args, **kwargs)
                    failed = False
                except DeclaredShapeError:  # a mistake in the model, not a failed simulation
                    raise
                except Exception:
                    failed = True
            if failed:  # isolate the failing rows
                partial = self._values(tracer.get_trace(), self.schema.latents)
                return Simulations.concat([self._run_row(partial, i, args, kwargs) for i in range(size)])
        return self._assemble(self._values(tracer.get_trace(), self.layout.recorded, size), size)

    def run_isolated(self, size: int, seed: int, fixed: dict, args, kwargs, timeout: float | None) -> Simulations:
        """:meth:`run` in a forked child process, killed after ``timeout * size`` seconds (never
        with ``timeout=None``). If the child is killed or dies (a simulator that segfaults), each
        row again in its own child with ``timeout`` seconds (rows seeded from ``(seed, row)``):
        rows that still fail are recorded as ``TIMEOUT`` or ``EXCEPTION``."""
        deadline = None if timeout is None else timeout * size
        outcome = call_with_deadline(functools.partial(self.run, size, seed, fixed, args, kwargs), deadline)
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

    def default_batch_size(self, num_simulations: int) -> int:
        """Rows per batch when none is given (see :func:`simulate`). It depends on the model
        alone, not on where the batches run, so that the same seed gives the same rows anywhere."""
        shapes = self.schema.shapes
        row_bytes = sum(shapes[n].numel() for n in self.layout.recorded) * torch.get_default_dtype().itemsize
        rows = math.ceil(num_simulations / MIN_BATCHES)
        looped = any(site.get("batched") is False for site in self.layout.identities.values())
        if not looped:  # a vectorized simulator pays a fixed cost per call (e.g. per time step)
            rows = max(rows, MIN_BATCH_ROWS)
        return max(1, min(rows, BATCH_BYTES // max(1, row_bytes), num_simulations))

    def manifest(self, seed: int, num_simulations: int, batch_size: int, parameters: dict) -> dict:
        """What identifies a campaign in a store: ``campaign`` must match to resume at all,
        ``fingerprint`` (code, prior, arguments, fixed parameters) unless the user overrides."""
        return {
            "campaign": {
                "seed": seed,
                "num_simulations": num_simulations,
                "batch_size": batch_size,
                "latent_sites": {n: list(self.schema.shapes[n]) for n in self.schema.latents},
                "data_sites": {n: list(self.schema.shapes[n]) for n in self.schema.simulated},
                "deterministic_sites": {n: list(self.schema.shapes[n]) for n in self.schema.deterministic},
            },
            "fingerprint": {**self.fingerprint, "parameters": describe(parameters)},
        }

    def _latents(self, size: int, seed: int, fixed: dict, args, kwargs) -> dict[str, torch.Tensor]:
        """The latent values :meth:`run` draws for a batch, without calling the simulator."""
        blank = {n: torch.full((size, *self.schema.shapes[n]), float("nan")) for n in self.schema.simulated}
        with seeded(seed), torch.no_grad(), poutine.trace() as tracer, contextlib.suppress(Exception):
            self._vectorized(size, {**fixed, **blank})(*args, **kwargs)
        return self._values(tracer.get_trace(), self.schema.latents)

    def _seeded_row(self, partial: dict, i: int, seed: int, args, kwargs) -> Simulations:
        with seeded(seed), torch.no_grad():
            return self._run_row(partial, i, args, kwargs)

    def _failed_row(self, partial: dict, i: int, status: Status, message: str) -> Simulations:
        values = {n: self._rows(n, partial[n][i : i + 1], 1) for n in self.schema.latents if n in partial}
        return self._assemble(values, 1, status, message)

    def _run_row(self, partial: dict, i: int, args, kwargs) -> Simulations:
        error = None
        with poutine.trace() as tracer:
            try:
                self._vectorized(1, {n: v[i : i + 1] for n, v in partial.items()})(*args, **kwargs)
            except DeclaredShapeError:
                raise
            except Exception as err:
                error = err
        if error is not None:
            values = self._values(tracer.get_trace(), self.schema.latents, 1)
            return self._assemble(values, 1, Status.EXCEPTION, f"{type(error).__name__}: {error}")
        return self._assemble(self._values(tracer.get_trace(), self.layout.recorded, 1), 1)

    def _values(self, trace, names: Sequence[str], size: int | None = None) -> dict[str, torch.Tensor]:
        """The values of the sites ``names`` that ``trace`` reached; ``[size, *shape]`` each
        when ``size`` is given, else as traced."""
        nodes = trace.nodes
        if size is None:
            return {n: nodes[n]["value"] for n in names if n in nodes}
        return {n: self._rows(n, nodes[n]["value"], size) for n in names if n in nodes}

    def _rows(self, name: str, value: torch.Tensor, size: int) -> torch.Tensor:
        shape = (size,) + self.schema.shapes[name]
        if value.numel() != torch.Size(shape).numel():
            raise SiteError(
                f"site '{name}' has shape {tuple(value.shape)} when simulated {size} at a time, but "
                f"shape {tuple(self.schema.shapes[name])} alone: its distribution must broadcast over "
                "pyro.plate batch dims (declare per-simulation dims with .to_event)"
            )
        return value.reshape(shape).to(torch.get_default_dtype())

    def _assemble(self, values: dict, size: int, status: Status = Status.OK, message: str = "") -> Simulations:
        """Rows of every recorded site (NaN where ``values`` lacks one, e.g. past a failure)."""
        values = {n: values[n] if n in values else torch.full((size, *self.schema.shapes[n]), float("nan"))
                  for n in self.layout.recorded}
        codes = torch.full((size,), int(status), dtype=torch.int8)
        messages = None if status == Status.OK else np.full(size, message, dtype=object)
        # a finite sum means every entry is finite (NaN and inf propagate): one cheap pass when all is well
        outputs = [values[n] for n in self.schema.simulated] if status == Status.OK else []
        suspects = [v for v in outputs if not torch.isfinite(v.sum())]
        if suspects:
            finite = torch.ones(size, dtype=torch.bool)
            for v in suspects:
                finite &= torch.isfinite(v.reshape(size, -1)).all(-1)
            codes[~finite] = int(Status.NONFINITE)
            messages = np.where((~finite).numpy(), "non-finite simulator output", "").astype(object)
        return Simulations(values, self.schema.latents, self.schema.simulated, codes, messages)

