"""Running a model forward: parameters from the prior, data from the simulator, in batches."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites
from tqdm.auto import tqdm

from .simulations import Simulations, Status
from .sites import is_simulator_site, plate_depth

__all__ = ["simulate"]

_PLATE = "_lfi_simulations"


def simulate(
    model,
    num_simulations: int,
    *args,
    seed: int | None = None,
    batch_size: int = 10_000,
    observed: str | Sequence[str] | None = None,
    parameters: dict[str, torch.Tensor] | None = None,
    progress: bool = True,
    **kwargs,
) -> Simulations:
    """Simulate ``model(*args, **kwargs)`` ``num_simulations`` times.

    The model runs vectorized under a :class:`pyro.plate` of ``batch_size`` rows at a time, with
    its observed sites un-conditioned, so every latent site is drawn from the prior and every
    data site from the simulator. A batch whose simulator raises is re-run row by row so that
    only the failing rows are lost; those rows, and rows with NaN or inf outputs, are kept with
    their parameters and marked invalid (see :class:`~pyro_lfi.simulations.Status`).

    Batch ``c`` runs under its own seed derived from ``(seed, c)``: the same seed and batch
    size give the same simulations, and the global RNG state is left untouched.

    :param model: a Pyro model whose data sites are :class:`~pyro_lfi.Simulator` sites.
    :param num_simulations: number of rows.
    :param seed: campaign seed (drawn at random and recorded if omitted).
    :param batch_size: rows per vectorized model call.
    :param observed: which observed sites to un-condition (default: all of them). Latent sites
        fixed with :func:`pyro.condition` count as observed; fix them with :func:`pyro.poutine.do`
        to keep them fixed here.
    :param parameters: fixed values of latent sites, ``[num_simulations, *site_shape]`` each
        (e.g. posterior draws for predictive simulations, or a sequential proposal); the other
        latent sites are drawn from the prior given them.
    :param progress: show a progress bar.
    """
    if num_simulations < 1:
        raise ValueError(f"num_simulations must be positive, got {num_simulations}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    plan = _Plan.probe(model, observed, seed, args, kwargs)
    parameters = plan.check_parameters(parameters or {}, num_simulations)
    parts = []
    with tqdm(total=num_simulations, unit="sim", disable=not progress, desc="simulate") as bar:
        for chunk, start in enumerate(range(0, num_simulations, batch_size)):
            rows = slice(start, min(start + batch_size, num_simulations))
            fixed = {n: v[rows] for n, v in parameters.items()}
            parts.append(plan.run(rows.stop - start, _chunk_seed(seed, chunk), fixed, args, kwargs))
            bar.update(rows.stop - start)
            bar.set_postfix(invalid=sum(len(p) - p.num_valid for p in parts))
    sims = Simulations.concat(parts)
    sims.seed = seed
    if sims.num_valid == 0:
        warnings.warn(f"all {len(sims)} simulations are invalid: {sims.message[0]}", stacklevel=2)
    return sims


_PROBE = 2**32 - 1  # spawn key of the probe run, apart from every chunk index


def _chunk_seed(seed: int, chunk: int) -> int:
    """Seed of one batch, derived from the campaign seed and the batch index."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])


@contextlib.contextmanager
def seeded(seed: int):
    """Seed torch, numpy and random inside the block; restore the previous state after."""
    state = pyro.util.get_rng_state()
    pyro.set_rng_seed(seed)
    try:
        yield
    finally:
        pyro.util.set_rng_state(state)


@dataclass(frozen=True)
class _Plan:
    """What one run of the model looks like: which sites to record, their shapes, plate depth."""

    model: object
    latents: tuple[str, ...]
    data: tuple[str, ...]
    shapes: dict[str, torch.Size]
    batch_dims: dict[str, int]
    max_plate_nesting: int

    @classmethod
    def probe(cls, model, observed, seed: int, args, kwargs) -> _Plan:
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
            except Exception:  # isolate the failing rows
                partial = {n: tracer.msngr.trace.nodes[n]["value"] for n in self.latents
                           if n in tracer.msngr.trace.nodes}
                return Simulations.concat(
                    [self._run_row(partial, i, args, kwargs) for i in range(size)]
                )
        values = {n: self._rows(n, trace.nodes[n]["value"], size) for n in self.latents + self.data}
        return self._assemble(values, size)

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
        codes = torch.full((size,), int(status), dtype=torch.long)
        if status == Status.OK:
            finite = torch.ones(size, dtype=torch.bool)
            for v in values.values():
                finite &= torch.isfinite(v.reshape(size, -1)).all(-1)
            codes[~finite] = int(Status.NONFINITE)
        messages = np.full(size, message, dtype=object)
        messages[(codes == Status.NONFINITE).numpy()] = "non-finite simulator output"
        return Simulations(values, self.latents, self.data, codes, messages)


def _probe_trace(model, seed: int, args, kwargs, attempts: int = 10):
    """One un-vectorized run of ``model``; retried at other seeds if the simulator raises."""
    for attempt in range(attempts):
        with seeded(_chunk_seed(seed, _PROBE - attempt)), torch.no_grad():
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
