"""``python -m pyro_lfi.benchmark.hodgkin_huxley``: throughput of the Hodgkin-Huxley simulator.

Both implementations of the same exponential-Euler scheme in :mod:`pyro_lfi.models.hodgkin_huxley`
(120 ms at dt = 0.01 ms, 12,000 steps), timed side by side on the same prior draws, from
parameters to the 7 summary statistics, on ``torch.get_num_threads()`` threads:

- **eager**: :func:`~pyro_lfi.models.hodgkin_huxley.simulate_reference` (the equations one torch
  operation per term, a Python loop over the steps for the whole batch) and
  :func:`~pyro_lfi.models.hodgkin_huxley.summary_statistics`, float32;
- **fused**: :func:`~pyro_lfi.models.hodgkin_huxley.simulate` with ``output="summary"``: chunks,
  10 steps per ``torch.compile``-d kernel, float32.

The compilation (the first call, on 2 parameter sets) is timed separately and excluded from the
rates; the speed-up is against the best eager rate. Then a check that the two give the same
traces for the same noise draws: the fused float32 traces, the eager float32 traces (float32
rounding alone) and the fused scheme in float64 are each compared with the eager float64 traces.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import torch

from pyro_lfi.models import hodgkin_huxley as hh

__all__ = ["check_agreement", "format_report", "main", "measure", "measure_compile"]

TYPICAL = (50.0, 5.0, 0.1, 0.07, 600.0, -60.0, 0.1, -70.0)  # Goncalves et al.'s synthetic observation


def _draws(num: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    low, high = torch.tensor(hh.PRIOR_LOW), torch.tensor(hh.PRIOR_HIGH)
    return low + (high - low) * torch.rand(num, len(low), generator=generator)


def measure_compile(backend: str = "auto", steps_per_call: int = 10,
                    protocol: hh.Protocol = hh.DEFAULT_PROTOCOL) -> float:
    """Seconds of the first call of the fused simulator in this process (compilation, or a load
    from inductor's on-disk cache), on 2 parameter sets."""
    start = time.perf_counter()
    hh.simulate(_draws(2, 0), output="summary", backend=backend, steps_per_call=steps_per_call, protocol=protocol)
    return time.perf_counter() - start


def measure(implementation: str, batch: int, seed: int = 0, backend: str = "auto", steps_per_call: int = 10,
            chunk_size: int | None = None, protocol: hh.Protocol = hh.DEFAULT_PROTOCOL) -> dict:
    """Simulations per minute of ``"eager"`` or ``"fused"`` on ``batch`` prior draws, to summary statistics."""
    params = _draws(batch, seed)
    torch.manual_seed(seed)
    start = time.perf_counter()
    if implementation == "eager":
        stats = hh.summary_statistics(hh.simulate_reference(params, protocol=protocol), protocol)
    elif implementation == "fused":
        stats = hh.simulate(params, output="summary", backend=backend, steps_per_call=steps_per_call,
                            chunk_size=chunk_size, protocol=protocol)
    else:
        raise ValueError(f"implementation must be 'eager' or 'fused', got {implementation!r}")
    seconds = time.perf_counter() - start
    return {"implementation": implementation, "batch": batch, "seconds": seconds,
            "sims_per_min": 60.0 * batch / seconds, "invalid": int((~stats.isfinite().all(-1)).sum())}


def check_agreement(num: int = 16, seed: int = 1, backend: str = "auto", steps_per_call: int = 10,
                    protocol: hh.Protocol = hh.DEFAULT_PROTOCOL) -> list[dict]:
    """Traces of the same noise draws, each compared with the eager float64 traces.

    ``num`` parameter sets: :data:`TYPICAL` and prior draws. For each comparison: the largest
    and median over parameter sets of the largest absolute difference in mV, the fraction of
    parameter sets whose traces stay within 1 mV, and the fraction with the same spike count.
    """
    params = torch.cat([torch.tensor([TYPICAL]), _draws(num - 1, seed)]).double()
    noise = torch.randn(num, protocol.num_steps, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    truth = hh.simulate_reference(params, noise, protocol=protocol)
    candidates = {
        "fused, float32": hh.simulate(params.float(), noise.float(), protocol=protocol, backend=backend,
                                      steps_per_call=steps_per_call),
        "eager, float32": hh.simulate_reference(params.float(), noise.float(), protocol=protocol),
        "fused scheme, float64 (uncompiled)": hh.simulate(params, noise, protocol=protocol, backend="eager",
                                                          steps_per_call=steps_per_call),
    }
    spikes = hh.summary_statistics(truth, protocol)[:, 0]
    rows = []
    for name, trace in candidates.items():
        error = (trace.double() - truth).abs().amax(-1)
        same = hh.summary_statistics(trace, protocol)[:, 0] == spikes.to(trace.dtype)
        rows.append({"traces": name, "max_abs_mV": error.max().item(), "median_max_abs_mV": error.median().item(),
                     "within_1mV": (error < 1.0).double().mean().item(),
                     "same_spike_count": same.double().mean().item(), "num": num})
    return rows


def format_report(rates: list[dict], compile_seconds: float, agreement: list[dict]) -> str:
    best_eager = max((r["sims_per_min"] for r in rates if r["implementation"] == "eager"), default=math.nan)
    lines = ["## Throughput (120 ms at dt = 0.01 ms, to 7 summary statistics)", "",
             "| implementation | batch | simulations/min | speed-up over eager | invalid rows |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['implementation']} | {r['batch']:,} | {r['sims_per_min']:,.0f} | "
              f"{r['sims_per_min'] / best_eager:.1f}x | {r['invalid']} |" for r in rates]
    lines += ["", f"Fused: first call (compilation or inductor cache load), excluded above: {compile_seconds:.1f} s.",
              "", "## Same noise, same traces (against the eager float64 traces)", "",
              "| traces | max abs diff (mV) | median over sets of max abs diff (mV) | sets within 1 mV | "
              "same spike count |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['traces']} | {r['max_abs_mV']:.2g} | {r['median_max_abs_mV']:.2g} | "
              f"{r['within_1mV']:.0%} of {r['num']} | {r['same_spike_count']:.0%} |" for r in agreement]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pyro_lfi.benchmark.hodgkin_huxley", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eager-batches", type=int, nargs="+", default=[1024, 8192])
    parser.add_argument("--fused-batches", type=int, nargs="+", default=[1024, 8192, 32768])
    parser.add_argument("--agreement-sets", type=int, default=16, help="parameter sets of the agreement check")
    parser.add_argument("--backend", default="auto", choices=["auto", "inductor", "eager"],
                        help="of the fused implementation ('eager': the same blocks uncompiled)")
    parser.add_argument("--steps-per-call", type=int, default=10)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    print(f"# pyro_lfi Hodgkin-Huxley benchmark, {time.strftime('%Y-%m-%d')}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}", flush=True)
    compile_seconds = measure_compile(args.backend, args.steps_per_call)
    rates = [measure("eager", b, args.seed) for b in args.eager_batches]
    rates += [measure("fused", b, args.seed, args.backend, args.steps_per_call, args.chunk_size)
              for b in args.fused_batches]
    agreement = check_agreement(args.agreement_sets, args.seed + 1, args.backend, args.steps_per_call)
    print(format_report(rates, compile_seconds, agreement))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "threads": torch.get_num_threads(), "compile_seconds": compile_seconds,
                       "rates": rates, "agreement": agreement}, f, indent=1)


if __name__ == "__main__":
    main()
