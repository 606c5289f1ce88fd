"""The fast integrator: the same scheme, blocks of steps fused into one ``torch.compile`` kernel."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from ..batch_inputs import check_run_options
from . import protocol as P
from .features import PLATEAU_THRESHOLD, SPIKE_THRESHOLD, features_from_events
from .protocol import DEFAULT_PROTOCOL, Protocol
from .reference import NUM_GATES, conductances, flatten_inputs, gate_q10s

_E_CAS = math.exp(-3.59)  # exp((V + 27) / 10) = _E_CAS / exp(-(V + 62.9) / 10)
_E_SYN = math.exp(27.9 / 5.0)  # exp(-(V + 35) / 5) = _E_SYN exp(-(V + 62.9) / 10)^2
_E_H = math.exp(42.9 / 5.5)  # exp((V + 75) / 5.5) = _E_H exp((V + 32.1) / 5.5)
_MAX_LAG = 4.0e6  # samples: the peak lag saturates here (exact in float32 codes)
NUM_STATE = 2 + NUM_GATES + 2  # V, [Ca], 11 gates, the running peak of a spike and the samples since it


def _phi(x: Tensor) -> Tensor:
    """:math:`(1 - e^{-x}) / x` for ``x >= 0``, by its Taylor series (error < 3e-10) below 0.1."""
    series = 1.0 + x * (-1.0 / 2 + x * (1.0 / 6 + x * (-1.0 / 24 + x * (1.0 / 120 - x * (1.0 / 720)))))
    return torch.where(x < 0.1, series, (1.0 - torch.exp(-x)) / x)


def _sig(u: Tensor, a: float, b: float) -> Tensor:
    return 1.0 / (1.0 + torch.exp((u + a) * (1.0 / b)))


def _kinetics(u: Tensor, ca: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """Steady states and rates :math:`1/\\tau` of the 11 gates, as ``reference.gate_kinetics``
    with 3 exponentials shared: :math:`e_{10} = e^{-(V + 62.9)/10}` serves the Na inactivation,
    CaS activation and synapse, :math:`e^{(V + 32.1)/5.5}` the CaT inactivation and H activation."""
    e10 = torch.exp((u + 62.9) * -0.1)
    e55 = torch.exp((u + 32.1) * (1.0 / 5.5))
    inf = [_sig(u, 25.5, -5.29), _sig(u, 48.9, 5.18), _sig(u, 27.1, -7.2), 1.0 / (1.0 + e55),
           _sig(u, 33.0, -8.1), _sig(u, 60.0, 6.2), _sig(u, 27.2, -8.7), _sig(u, 56.9, 4.9),
           ca / (ca + P.KCA_HALF) * _sig(u, 28.3, -12.6), _sig(u, 12.3, -11.8), 1.0 / (1.0 + _E_H * e55)]
    tau = [2.64 - 2.52 * _sig(u, 120.0, -25.0),
           1.34 / (1.0 + e10) * (1.5 + _sig(u, 34.9, 3.6)),
           43.4 - 42.6 * _sig(u, 68.1, -20.5),
           210.0 - 179.6 * _sig(u, 55.0, -16.9),
           2.8 + 14.0 / (_E_CAS / e10 + torch.exp((u + 70.0) * (-1.0 / 13.0))),
           120.0 + 300.0 / (torch.exp((u + 55.0) * (1.0 / 9.0)) + torch.exp((u + 65.0) * (-1.0 / 16.0))),
           23.2 - 20.8 * _sig(u, 32.9, -15.2),
           77.2 - 58.4 * _sig(u, 38.9, -26.5),
           180.6 - 150.2 * _sig(u, 46.0, -22.7),
           14.4 - 12.8 * _sig(u, 28.3, -19.2),
           2.0 / (torch.exp(-14.59 - 0.086 * u) + torch.exp(-1.87 + 0.0701 * u))]
    return inf, tau, e10


def _make_step(protocol: Protocol) -> Callable[..., tuple[list[Tensor], list[Tensor]]]:
    """One step ``(x, gbar, gsyn, xi) -> (x, codes)`` on lists of ``[n]`` vectors (one loop over the
    batch when compiled): ``x`` the 15 states of each neuron (:data:`NUM_STATE`) and the 4 synaptic
    activations, ``gbar`` 8 conductances per neuron, ``gsyn`` 7, ``xi`` 3 noise draws; the
    protocol's constants folded in."""
    dt, sigma, nernst, ca_decay = protocol.dt, protocol.noise_density, protocol.nernst_factor, protocol.ca_decay
    gate_rates = [-dt * q for q in gate_q10s(protocol)]
    (_, _, _, e_glut, k_glut), (_, _, _, e_chol, k_chol) = P.SYNAPSES[:2]  # AB-LP and PD-LP: one of each kind
    glut, chol = dt * protocol.q10(P.Q10_TAU_SYN) / k_glut, dt * protocol.q10(P.Q10_TAU_SYN) / k_chol

    def cell(x: list[Tensor], g: list[Tensor], g_glut: Tensor, g_chol: Tensor | float, xi: Tensor
             ) -> tuple[list[Tensor], Tensor, Tensor]:
        v, ca, m_na, h_na, m_cat, h_cat, m_cas, h_cas, m_a, h_a, m_kca, m_kd, m_h, peak, lag = x
        g_na = g[0] * (m_na * m_na * m_na * h_na)
        g_ca = g[1] * (m_cat * m_cat * m_cat * h_cat) + g[2] * (m_cas * m_cas * m_cas * h_cas)
        m_kca2, m_kd2 = m_kca * m_kca, m_kd * m_kd
        g_k = g[3] * (m_a * m_a * m_a * h_a) + g[4] * (m_kca2 * m_kca2) + g[5] * (m_kd2 * m_kd2)
        e_ca = nernst * torch.log(P.CA_OUT / ca.clamp(min=P.CA_MIN))
        g_tot = g_glut + g_chol + g_na + g_ca + g_k + g[6] * m_h + g[7]
        i_tot = (g_glut * e_glut + g_chol * e_chol + g_na * P.E_NA + g_ca * e_ca + g_k * P.E_K + g[6] * m_h * P.E_H
                 + g[7] * P.E_LEAK + sigma * xi - g_tot * v)
        v_new = v + (dt / P.C_M) * i_tot * _phi((dt / P.C_M) * g_tot)
        ca_inf = P.CA_REST - P.F_CA * g_ca * (v - e_ca)
        inf, tau, e10 = _kinetics(v.clamp(-P.V_CLIP, P.V_CLIP), ca)
        gates = [x_inf + (x_old - x_inf) * torch.exp(rate / x_tau)
                 for x_old, x_inf, x_tau, rate in zip(x[2:13], inf, tau, gate_rates)]
        spiking, was_spiking = v_new > SPIKE_THRESHOLD, v > SPIKE_THRESHOLD
        higher = (spiking & ~was_spiking) | (v_new > peak)
        peak = torch.where(higher, v_new, peak)
        lag = torch.where(higher, 0.0, (lag + 1.0).clamp(max=_MAX_LAG))
        code = (torch.where(spiking != was_spiking, 2.0 + 2.0 * lag, 0.0)
                + ((v_new > PLATEAU_THRESHOLD) != (v > PLATEAU_THRESHOLD)).to(v.dtype))
        return [v_new, ca_inf + (ca - ca_inf) * ca_decay, *gates, peak, lag], code, e10

    def step(x: list[Tensor], gbar: list[Tensor], gsyn: list[Tensor], xi: list[Tensor]
             ) -> tuple[list[Tensor], list[Tensor]]:
        s_ab, s_pd, s_lp, s_py = x[3 * NUM_STATE :]  # AB and PD synapses onto LP and PY share activations
        inputs = [(gsyn[4] * s_lp, 0.0), (gsyn[0] * s_ab + gsyn[6] * s_py, gsyn[1] * s_pd),
                  (gsyn[2] * s_ab + gsyn[5] * s_lp, gsyn[3] * s_pd)]
        new, codes, s_inf, w = [], [], [], []
        for j in range(3):
            cell_j, code, e10 = cell(x[NUM_STATE * j : NUM_STATE * (j + 1)], gbar[8 * j : 8 * j + 8], *inputs[j], xi[j])
            e_syn = _E_SYN * (e10 * e10)  # exp(-(V_j + 35) / 5)
            new, codes = new + cell_j, codes + [code]
            s_inf.append(1.0 / (1.0 + e_syn))
            w.append(1.0 + 1.0 / e_syn)  # 1 / (1 - s_inf): dt / tau_s = w dt q / k_minus
        new += [s_ab + (s_inf[0] - s_ab) * (glut * w[0]).clamp(max=1.0),
                s_pd + (s_inf[0] - s_pd) * (chol * w[0]).clamp(max=1.0),
                s_lp + (s_inf[1] - s_lp) * (glut * w[1]).clamp(max=1.0),
                s_py + (s_inf[2] - s_py) * (glut * w[2]).clamp(max=1.0)]
        return new, codes

    return step


def _make_block(num_steps: int, protocol: Protocol, with_trace: bool) -> Callable[..., tuple[Tensor, ...]]:
    """``num_steps`` steps: ``(x [49, n], gbar [24, n], gsyn [7, n], noise [num_steps, 3, n]) ->
    (x, codes [num_steps * 3, n] int32, V [num_steps * 3, n] if with_trace)``. A code is
    ``2 (1 + lag)`` where V crosses -10 mV (``lag``: samples since the excursion's peak) plus 1
    where it crosses -30 mV."""
    step = _make_step(protocol)

    def block(x: Tensor, gbar: Tensor, gsyn: Tensor, noise: Tensor) -> tuple[Tensor, ...]:
        state, g, gs = list(x.unbind(0)), list(gbar.unbind(0)), list(gsyn.unbind(0))
        codes, trace = [], []
        for k in range(num_steps):
            state, code = step(state, g, gs, list(noise[k].unbind(0)))
            codes += code
            trace += state[0 : 3 * NUM_STATE : NUM_STATE]
        out = (torch.stack(state), torch.stack(codes).to(torch.int32))
        return out + (torch.stack(trace),) if with_trace else out

    return block


_COMPILED: dict[tuple, Callable[..., tuple[Tensor, ...]]] = {}
_COMPILE_FAILED: dict[tuple, str] = {}  # the kernels that failed to compile, and why
_LANES = 16  # compiled chunks are padded to whole vectors (AVX-512 float32): a scalar tail is slow
_INDUCTOR_OPTIONS = {
    # one loop over the batch for the whole block (each step's state is realized, so that the
    # graph stays linear in the number of steps, and then fused into that loop)
    "max_fusion_size": 1_000_000,
    # an OpenMP loop on torch's current number of threads, whatever the chunk size it was traced with
    "cpp.dynamic_threads": True,
}


def _compiles(backend: str, key: tuple) -> bool:
    """Whether to compile: ``"inductor"`` always; ``"auto"`` in float32 unless it failed before
    (gcc 12 fails on the float64 kernel, after minutes)."""
    return backend == "inductor" or (backend == "auto" and key[-1] == torch.float32 and key not in _COMPILE_FAILED)


def _block_fn(num_steps: int, protocol: Protocol, with_trace: bool, backend: str,
              key: tuple) -> Callable[..., tuple[Tensor, ...]]:
    """The block update: compiled (once per process, protocol constants and dtype: ``key``) or eager."""
    if not _compiles(backend, key):
        return _make_block(num_steps, protocol, with_trace)
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(_make_block(num_steps, protocol, with_trace), fullgraph=True,
                                       options=_INDUCTOR_OPTIONS)
    return _COMPILED[key]


def _initial(n: int, protocol: Protocol, dtype: torch.dtype) -> tuple[Tensor, list[Tensor]]:
    """The reference's initial state ``[49, n]`` (V = v0, [Ca] = 0.05 µM, gates and synapses 0),
    and the crossings at sample 0 if v0 is above a threshold."""
    state = torch.zeros(3 * NUM_STATE + 4, n, dtype=dtype)
    for j in range(3):
        state[NUM_STATE * j], state[NUM_STATE * j + 1], state[NUM_STATE * j + 13] = protocol.v0, P.CA_REST, protocol.v0
    kinds = [k for k, threshold in enumerate((SPIKE_THRESHOLD, PLATEAU_THRESHOLD)) if protocol.v0 > threshold]
    rows, neurons = torch.arange(n).repeat(3 * len(kinds)), torch.arange(3).repeat_interleave(n).repeat(len(kinds))
    kind = torch.tensor(kinds, dtype=torch.int64).repeat_interleave(3 * n)
    return state, [torch.zeros_like(rows), rows, neurons, kind, torch.zeros_like(rows)]


def _decode(codes: Tensor, first_sample: int) -> list[Tensor]:
    """Events ``[sample, row, neuron, kind, lag]`` of the codes ``[w, 3, n]`` of samples
    ``first_sample ..``: a code ``2 (1 + lag) b + p`` holds a spike crossing if ``b`` and a
    plateau crossing if ``p``."""
    k, neuron, row = codes.nonzero(as_tuple=True)
    value = codes[k, neuron, row].long()
    spike, plateau = value >= 2, value % 2 == 1
    parts = [torch.cat([x[spike], x[plateau]]) for x in (k + first_sample, row, neuron)]
    kind = torch.cat([torch.zeros_like(k[spike]), torch.ones_like(k[plateau])])
    lag = torch.cat([value[spike] // 2 - 1, torch.zeros_like(k[plateau])])
    return [x.to(torch.int32) for x in parts + [kind, lag]]  # held until the end of the chunk: compactly


# -- the chunked driver ---------------------------------------------------------------------------


@torch.no_grad()
def _run_blocks(block: Callable[..., tuple[Tensor, ...]], size: int, params: Tensor, noise: Tensor | None,
                protocol: Protocol, output: str, subsample: int, compiled: bool) -> Tensor:
    """One chunk, ``size`` steps per call of ``block``: ``[n, 18]`` features or ``[n, 3, samples]`` traces.

    A compiled block is traced once, dynamic in the chunk size. The crossing codes of at least
    200 steps are gathered in a window before their (sparse) events are extracted, so that
    neither whole traces nor dense codes are ever held for the features.
    """
    dtype, steps, n = params.dtype, protocol.num_steps, params.shape[0]
    state, first_events = _initial(n, protocol, dtype)
    events = [[e.to(torch.int32)] for e in first_events]
    gbar, gsyn = conductances(params, protocol)
    gbar, gsyn = gbar.permute(1, 0, 2).reshape(24, n).contiguous(), gsyn.contiguous()  # by neuron, then channel
    draws = torch.empty(size, 3, n, dtype=dtype)
    if compiled:  # one trace for every chunk size (floats stay constants)
        for t, dim in ((state, 1), (gbar, 1), (gsyn, 1), (draws, 2)):
            torch._dynamo.mark_dynamic(t, dim)
    window = torch.empty(size * math.ceil(max(200, (1 << 18) // (3 * n)) / size), 3, n, dtype=torch.int32)
    filled = window_start = 0
    if output == "trace":
        trace = torch.empty(len(range(0, protocol.num_samples, subsample)), 3, n, dtype=dtype)
        trace[0] = state[0 : 3 * NUM_STATE : NUM_STATE]
    for start in range(0, steps, size):
        stop = min(start + size, steps)
        if stop - start < size:  # the last, shorter block: eagerly
            block = _make_block(stop - start, protocol, output == "trace")
            draws = draws[: stop - start]
        if noise is None:
            torch.randn(draws.shape, dtype=dtype, out=draws)
        else:
            draws.copy_(noise[:, :, start:stop].permute(2, 1, 0))
        state, codes, *v = block(state, gbar, gsyn, draws)  # samples start + 1 .. stop
        window[filled : filled + stop - start] = codes.view(stop - start, 3, n)
        filled += stop - start
        if filled + size > window.shape[0] or stop == steps:
            for field, part in zip(events, _decode(window[:filled], window_start + 1)):
                field.append(part)
            window_start, filled = stop, 0
        if output == "trace":
            first = start + 1 + (-(start + 1)) % subsample
            if first <= stop:
                trace[first // subsample : stop // subsample + 1] = v[0].view(-1, 3, n)[first - start - 1 :: subsample]
    if output == "trace":
        return trace.permute(2, 1, 0)
    return features_from_events([torch.cat(field) for field in events], n, protocol).to(dtype)


def _simulate_chunk(params: Tensor, noise: Tensor | None, protocol: Protocol, backend: str,
                    steps_per_call: int, output: str, subsample: int) -> Tensor:
    n, size, with_trace = params.shape[0], min(steps_per_call, protocol.num_steps), output == "trace"
    key = (size, protocol.dt, protocol.temperature, protocol.noise_std, with_trace, params.dtype)
    block = _block_fn(size, protocol, with_trace, backend, key)
    run = functools.partial(_run_blocks, size=size, protocol=protocol, output=output, subsample=subsample)
    if n == 0 or not _compiles(backend, key):
        return run(block, params=params, noise=noise, compiled=False)
    if n % _LANES:  # pad with copies of the last row (the kernel is dynamic in sizes >= 2 only, as dynamo is)
        pad = _LANES - n % _LANES
        noise = None if noise is None else torch.cat([noise, noise[-1:].expand(pad, -1, -1)])
        params = torch.cat([params, params[-1:].expand(pad, -1)])
    try:
        return run(block, params=params, noise=noise, compiled=True)[:n]
    except Exception as err:  # no C++ compiler, unsupported platform, ...: the same blocks, eagerly
        if backend != "auto":
            raise
        _COMPILE_FAILED[key] = f"{type(err).__name__}: {err}"
        warnings.warn(f"torch.compile of the pyloric network's step failed ({_COMPILE_FAILED[key][:300]}); "
                      "running it eagerly (slower)", RuntimeWarning, stacklevel=4)
        return run(_make_block(size, protocol, with_trace), params=params[:n],
                   noise=None if noise is None else noise[:n], compiled=False)


@torch.no_grad()
def simulate(params, noise: Tensor | None = None, *, output: str = "features", subsample: int = 1,
             protocol: Protocol = DEFAULT_PROTOCOL, dtype: torch.dtype | None = None,
             chunk_size: int | None = None, backend: str = "auto", steps_per_call: int = 10) -> Tensor:
    """Simulate the pyloric network by the fused integrator, to its features or its traces.

    The exponential-Euler scheme of :func:`simulate_reference`, rearranged (shared exponentials,
    the 4 distinct synaptic activations instead of 7, the V step as an increment that does not
    cancel in float32), over the batch in chunks of ``chunk_size``, ``steps_per_call`` steps per
    call of one ``torch.compile``-d kernel (``backend="inductor"``, chunks padded to a multiple of
    16 rows; ``"eager"`` runs the same block function uncompiled; ``"auto"``: compiled in float32,
    falling back to eager where compilation fails, eager in other dtypes). With
    ``output="features"`` only the threshold crossings are kept while simulating. Nothing raises
    for parameters in the prior's box.

    :param params: ``[..., 31]`` parameters (:data:`PARAMETER_NAMES`).
    :param noise: ``[..., 3, num_steps]`` standard normal draws, the same as
        :func:`simulate_reference` takes; drawn from torch's global RNG block by block if omitted.
    :param output: ``"features"`` (``[..., 18]``, :data:`FEATURE_NAMES`, NaN where undefined) or
        ``"trace"`` (``[..., 3, ceil(num_samples / subsample)]`` mV, ``V(0)`` first).
    :param dtype: computation dtype (default: that of ``params`` if floating, else torch's default).
    """
    check_run_options(output, ("features", "trace"), backend, subsample, steps_per_call)
    params, noise, batch = flatten_inputs(params, noise, dtype, protocol.num_steps)
    chunk_size = chunk_size or 1024 * torch.get_num_threads()
    shape = (18,) if output == "features" else (3, protocol.output_width(output, subsample) // 3)
    results = [_simulate_chunk(params[i : i + chunk_size], None if noise is None else noise[i : i + chunk_size],
                               protocol, backend, steps_per_call, output, subsample)
               for i in range(0, params.shape[0], chunk_size)]
    if not results:
        return torch.empty(batch + shape, dtype=params.dtype)
    return torch.cat(results).reshape(batch + shape)
