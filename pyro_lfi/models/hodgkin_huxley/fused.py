"""The fast integrator: the same scheme, blocks of steps fused into one ``torch.compile`` kernel."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from ..batch_inputs import check_run_options
from .protocol import C_M, DEFAULT_PROTOCOL, E_K, E_NA, U_CLIP, Protocol
from .reference import flatten_inputs, initial_state
from .statistics import StreamingStatistics

_EXP_M5 = math.exp(-5.0)
_EFUN_SERIES = 0.1  # below this |z|, z / (e^z - 1) by its Taylor series (float32 cancellation)


def _efun_fast(z: Tensor, ez: Tensor) -> Tensor:
    """:math:`z / (e^z - 1)` given :math:`e^z`; the series :math:`1 - z/2 + z^2/12 - z^4/720`
    (error < 3e-11) near 0, where ``ez - 1`` would cancel."""
    z2 = z * z
    series = 1.0 + z * -0.5 + z2 * (1.0 / 12.0 - z2 * (1.0 / 720.0))
    return torch.where(z.abs() < _EFUN_SERIES, series, z / (ez - 1.0))


def _phi(x: Tensor) -> Tensor:
    """:math:`(1 - e^{-x}) / x` for ``x >= 0``, by its Taylor series (error < 3e-10) below 0.1."""
    series = 1.0 + x * (-1.0 / 2 + x * (1.0 / 6 + x * (-1.0 / 24 + x * (1.0 / 120 - x * (1.0 / 720)))))
    return torch.where(x < 0.1, series, (1.0 - torch.exp(-x)) / x)


def _make_block(num_steps: int, dt: float) -> Callable[..., tuple[Tensor, Tensor]]:
    """The fused update of ``num_steps`` steps: ``(state, params, noise, current) -> (state, V)``.

    ``state [5, n]`` (V, m, h, n, p), ``params [8, n]`` packed by :func:`_pack`, ``noise
    [num_steps, n]``, ``current [num_steps, 1]``; returns the new state and ``V [num_steps, n]``
    after each step.
    """

    def block(state: Tensor, params: Tensor, noise: Tensor, current: Tensor) -> tuple[Tensor, Tensor]:
        v, m, h, n, p = state.unbind(0)
        g_na, g_k, g_leak, g_m, v_t, e_leak, noise_scale, inv_tau_max = params.unbind(0)
        trace = []
        for k in range(num_steps):
            gna = g_na * (m * m * m * h)
            n2 = n * n
            gk = g_k * (n2 * n2)
            gm = g_m * p
            g = gna + gk + gm + g_leak
            i_tot = (gna * (E_NA - v) + (gk + gm) * (E_K - v) + g_leak * (e_leak - v)
                     + current[k] + noise_scale * noise[k])
            v = v + (dt * i_tot) * _phi((dt / C_M) * g) / C_M
            u = (v - v_t).clamp(-U_CLIP, U_CLIP)
            # beta_m, beta_h and alpha_n share exp(0.2 (u - 40)); p_inf and tau_p share exp((V + 35) / 20)
            z_am = -0.25 * (u - 13.0)
            z_bm = 0.2 * (u - 40.0)
            e_bm = torch.exp(z_bm)
            inv_e_bm = 1.0 / e_bm
            a_m = 1.28 * _efun_fast(z_am, torch.exp(z_am))
            b_m = 1.4 * _efun_fast(z_bm, e_bm)
            a_h = 0.128 * torch.exp((u - 17.0) * (-1.0 / 18.0))
            b_h = 4.0 / (1.0 + inv_e_bm)
            a_n = 0.16 * _efun_fast(-z_bm - 5.0, _EXP_M5 * inv_e_bm)
            b_n = 0.5 * torch.exp((u - 10.0) * (-1.0 / 40.0))
            e_p = torch.exp(0.05 * (u + v_t + 35.0))
            e_p2 = e_p * e_p
            p_inf = e_p2 / (e_p2 + 1.0)
            s = a_m + b_m
            m_inf = a_m / s
            m = m_inf + (m - m_inf) * torch.exp(-dt * s)
            s = a_h + b_h
            h_inf = a_h / s
            h = h_inf + (h - h_inf) * torch.exp(-dt * s)
            s = a_n + b_n
            n_inf = a_n / s
            n = n_inf + (n - n_inf) * torch.exp(-dt * s)
            p = p_inf + (p - p_inf) * torch.exp((-dt) * (3.3 * e_p + 1.0 / e_p) * inv_tau_max)
            trace.append(v)
        return torch.stack([v, m, h, n, p]), torch.stack(trace)

    return block


def _pack(params: Tensor, dt: float) -> Tensor:
    """``[n, 8]`` parameters to the ``[8, n]`` rows the fused block reads."""
    g_na, g_k, g_leak, g_m, tau_max, v_t, sigma, e_leak = params.unbind(-1)
    return torch.stack([g_na, g_k, g_leak, g_m, v_t, e_leak, sigma / math.sqrt(dt), 1.0 / tau_max])


_COMPILED: dict[tuple[int, float], Callable[..., tuple[Tensor, Tensor]]] = {}
_COMPILE_FAILED: list[str] = []
_INDUCTOR_OPTIONS = {
    # one loop over the batch for the whole block: no intermediate buffers between the steps
    "max_fusion_size": 1_000_000,
    "realize_opcount_threshold": 1_000_000,
    "realize_reads_threshold": 1_000_000,
    "realize_acc_reads_threshold": 1_000_000,
    # an OpenMP loop on torch's current number of threads, whatever the chunk size it was traced with
    "cpp.dynamic_threads": True,
}


def _block_fn(num_steps: int, dt: float, backend: str) -> Callable[..., tuple[Tensor, Tensor]]:
    """The block update of ``num_steps`` steps: compiled (once per process) or eager."""
    if backend == "eager" or (backend == "auto" and _COMPILE_FAILED):
        return _make_block(num_steps, dt)
    key = (num_steps, dt)
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(_make_block(num_steps, dt), fullgraph=True, options=_INDUCTOR_OPTIONS)
    return _COMPILED[key]


# -- the chunked driver ---------------------------------------------------------------------------


@torch.no_grad()
def _run_blocks(block: Callable[..., tuple[Tensor, Tensor]], size: int, params: Tensor, noise: Tensor | None,
                protocol: Protocol, output: str, subsample: int, compiled: bool) -> Tensor:
    """One chunk, ``size`` steps per call of ``block``: ``[n, 7]`` summaries or ``[n, samples]`` traces.

    A compiled block is traced once, at the first chunk, dynamic in the chunk size (the tensors
    marked so) with its float constants specialized; its noise comes in a tensor of its own
    rather than a view at varying offsets into a larger one, which would be traced again. The
    summary statistics are accumulated over windows of at least 100 steps, so that a chunk never
    holds whole traces for them.
    """
    dtype, steps, n = params.dtype, protocol.num_steps, params.shape[0]
    state = initial_state(params, protocol.v0)
    packed = _pack(params, protocol.dt)
    draws = torch.empty(size, n, dtype=dtype)
    if compiled:  # one trace for every chunk size (floats stay constants)
        for t in (state, packed, draws):
            torch._dynamo.mark_dynamic(t, 1)
    current = protocol.current(dtype)
    distinct: dict[tuple[float, ...], Tensor] = {}  # the current of each block, one tensor per distinct block
    stimuli = [distinct.setdefault(tuple(values), torch.tensor(values, dtype=dtype)[:, None])
               for values in (current[i : i + size].tolist() for i in range(0, steps, size))]
    if output == "summary":
        stats = StreamingStatistics(n, protocol, dtype)
        stats.update(state[:1])
        window = torch.empty(size * math.ceil(max(100, (1 << 17) // n) / size), n, dtype=dtype)  # >= 100 steps
        filled = 0
    else:
        trace = torch.empty(len(range(0, protocol.num_samples, subsample)), n, dtype=dtype)
        trace[0] = state[0]
    for start, stimulus in zip(range(0, steps, size), stimuli):
        stop = min(start + size, steps)
        if stop - start < size:  # the last, shorter block: eagerly
            block = _make_block(stop - start, protocol.dt)
            draws = draws[: stop - start]
        if noise is None:
            torch.randn(draws.shape, dtype=dtype, out=draws)
        else:
            draws.copy_(noise[:, start:stop].T)
        state, out = block(state, packed, draws, stimulus)  # out: samples start + 1 .. stop
        if output == "summary":
            window[filled : filled + stop - start] = out
            filled += stop - start
            if filled + size > window.shape[0] or stop == steps:
                stats.update(window[:filled])
                filled = 0
        else:
            first = start + 1 + (-(start + 1)) % subsample
            if first <= stop:
                trace[first // subsample : stop // subsample + 1] = out[first - start - 1 :: subsample]
    return stats.result() if output == "summary" else trace.T


def _simulate_chunk(params: Tensor, noise: Tensor | None, protocol: Protocol, backend: str,
                    steps_per_call: int, output: str, subsample: int) -> Tensor:
    size = min(steps_per_call, protocol.num_steps)
    block = _block_fn(size, protocol.dt, backend)
    run = functools.partial(_run_blocks, size=size, params=params, noise=noise, protocol=protocol, output=output,
                            subsample=subsample)
    if backend == "eager" or params.shape[0] == 0:
        return run(block, compiled=False)
    if params.shape[0] == 1:  # the compiled kernel is dynamic in sizes >= 2 (sizes 0 and 1 are special to dynamo)
        twice = None if noise is None else noise.expand(2, -1)
        return _simulate_chunk(params.expand(2, -1), twice, protocol, backend, steps_per_call, output, subsample)[:1]
    try:
        return run(block, compiled=backend != "eager" and not _COMPILE_FAILED)
    except Exception as err:  # no C++ compiler, unsupported platform, ...: the same blocks, eagerly
        if backend != "auto" or _COMPILE_FAILED:
            raise
        _COMPILE_FAILED.append(f"{type(err).__name__}: {err}")
        warnings.warn(f"torch.compile of the Hodgkin-Huxley step failed ({_COMPILE_FAILED[-1][:300]}); "
                      "running it eagerly (slower)", RuntimeWarning, stacklevel=4)
        return run(_make_block(size, protocol.dt), compiled=False)


@torch.no_grad()
def simulate(params, noise: Tensor | None = None, *, output: str = "trace", subsample: int = 1,
             protocol: Protocol = DEFAULT_PROTOCOL, dtype: torch.dtype | None = None,
             chunk_size: int | None = None, backend: str = "auto", steps_per_call: int = 10) -> Tensor:
    """Simulate the neuron for each parameter set: traces or summary statistics (fast path).

    The batch is processed in chunks of ``chunk_size`` parameter sets; within a chunk, blocks of
    ``steps_per_call`` steps run as one kernel compiled by ``torch.compile`` (inductor; it needs
    a C++ compiler) on torch's ``get_num_threads()`` threads. The kernel is compiled once per
    process, block length, dt and thread count (about a minute the first time on 2 CPU cores,
    several seconds when inductor's on-disk cache has it) and serves every batch size.

    :param params: ``[..., 8]`` parameters in the order of :data:`PARAMETER_NAMES`.
    :param noise: ``[..., num_steps]`` standard normal draws :math:`\\xi_k` (the same as for
        :func:`simulate_reference` gives the same trace up to float rounding); drawn from torch's
        global RNG, ``[steps_per_call, chunk]`` at a time, if omitted.
    :param output: ``"trace"`` (``[..., ceil(num_samples / subsample)]``, mV) or ``"summary"``
        (``[..., 7]``, :func:`summary_statistics` of the full-resolution traces, which are
        never held in memory whole).
    :param subsample: keep every ``subsample``-th sample of a trace (``V(0)`` first).
    :param protocol: the recording (:class:`Protocol`).
    :param dtype: computation dtype (default: that of ``params`` if floating, else torch's
        default); float32 is the fast one.
    :param chunk_size: parameter sets per chunk (default ``4096 * torch.get_num_threads()``).
    :param backend: ``"auto"`` (compile; if compilation fails, warn and run eagerly), ``"inductor"``
        (compile or raise) or ``"eager"`` (the same blocks, uncompiled: slow, no compilation).
    :param steps_per_call: steps fused into one kernel call: more means less Python overhead per
        step and a longer compilation.
    """
    check_run_options(output, ("trace", "summary"), backend, subsample, steps_per_call)
    params, noise, batch = flatten_inputs(params, noise, dtype, protocol.num_steps)
    chunk_size = chunk_size or 4096 * torch.get_num_threads()
    width = protocol.output_width(output, subsample)
    results = []
    for start in range(0, params.shape[0], chunk_size):
        chunk_noise = None if noise is None else noise[start : start + chunk_size]
        results.append(_simulate_chunk(params[start : start + chunk_size], chunk_noise, protocol, backend,
                                       steps_per_call, output, subsample))
    if not results:
        return torch.empty(batch + (width,), dtype=params.dtype)
    return torch.cat(results).reshape(batch + (width,))
