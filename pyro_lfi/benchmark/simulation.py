"""``python -m pyro_lfi.benchmark.simulation``: the cost of running simulations through pyro_lfi.

Two measurements, printed as Markdown tables:

- **Overhead**: :func:`pyro_lfi.simulate` on two moons (a cheap vectorized simulator) against
  the raw simulator called directly on prior draws, once, for all simulations (one batch: ≤ 1.5x).
- **Scaling**: a simulator costing ``--call-ms`` of CPU per call (a fixed amount of Python work,
  calibrated here, so that workers sharing a core do not look faster), run one parameter set at
  a time on 1 and 2 workers of a process pool and of a ``dask.distributed`` ``LocalCluster``
  (target: 2 workers ≥ 1.7x the throughput of 1). Workers are started and warmed up before the
  clock starts.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import platform
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

import pyro
import pyro.distributions as dist
import torch

import pyro_lfi as lfi

from .tasks import get_task, two_moons_simulator

__all__ = ["main", "measure_overhead", "measure_scaling"]


def _best_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure_overhead(num_simulations: int, batch_sizes: list[int], repeats: int = 3, seed: int = 0) -> list[dict]:
    """Seconds for ``num_simulations`` two-moons simulations: raw, and through ``lfi.simulate``."""
    task = get_task("two_moons")
    torch.manual_seed(seed)
    raw = _best_time(lambda: two_moons_simulator(task.prior.sample((num_simulations,))), repeats)
    rows = [{"what": "raw simulator, one call on prior draws", "seconds": raw, "ratio": 1.0}]
    for batch_size in [None, *sorted({min(b, num_simulations) for b in batch_sizes}, reverse=True)]:
        run = functools.partial(lfi.simulate, task.model, num_simulations, seed=seed, batch_size=batch_size,
                                progress=False)
        seconds = _best_time(run, repeats)
        what = "lfi.simulate, default batch_size" if batch_size is None else f"lfi.simulate, batch_size={batch_size:,}"
        rows.append({"what": what, "seconds": seconds, "ratio": seconds / raw})
    return rows


# -- scaling --------------------------------------------------------------------------------------


def _spin(iterations: int) -> float:
    total = 0.0
    for i in range(iterations):
        total += i * 1e-12
    return total


def calibrate(call_ms: float) -> int:
    """Iterations of :func:`_spin` that take ``call_ms`` milliseconds on this machine."""
    iterations = 10_000
    while True:
        start = time.perf_counter()
        _spin(iterations)
        elapsed = time.perf_counter() - start
        if elapsed > 0.05:
            return max(1, int(iterations * call_ms / 1e3 / elapsed))
        iterations *= 2


def costly_simulator(theta: torch.Tensor, iterations: int) -> torch.Tensor:
    """One parameter set: a fixed amount of CPU work, then ``theta`` plus noise."""
    return theta + 0.1 * torch.randn(theta.shape) + 0.0 * _spin(iterations)


def costly_model(iterations: int):
    simulator = functools.partial(costly_simulator, iterations=iterations)

    def model(x=None):
        theta = pyro.sample("theta", dist.Uniform(-1.0, 1.0).expand([2]).to_event(1))
        return pyro.sample("x", lfi.Simulator(simulator, theta, batched=False), obs=x)

    return model


@contextmanager
def process_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(workers) as pool:
        yield pool


@contextmanager
def dask_cluster(workers: int) -> Iterator[object]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client


def measure_scaling(calls: int, call_ms: float, batch_size: int, kinds: list[str], seed: int = 0) -> list[dict]:
    """Simulations per second of the costly simulator on 1 and 2 workers of each executor kind."""
    model = costly_model(calibrate(call_ms))
    start = time.perf_counter()
    lfi.simulate(model, calls, seed=seed, batch_size=batch_size, progress=False)
    serial = calls / (time.perf_counter() - start)
    rows = [{"executor": "this process", "workers": 1, "sims_per_s": serial, "speedup": 1.0}]
    makers = {"process pool": process_pool, "dask LocalCluster": dask_cluster}
    for kind in kinds:
        one = None
        for workers in (1, 2):
            with makers[kind](workers) as executor:
                lfi.simulate(model, 4 * workers, seed=seed + 1, batch_size=1, progress=False, executor=executor)
                start = time.perf_counter()
                lfi.simulate(model, calls, seed=seed, batch_size=batch_size, progress=False, executor=executor)
                rate = calls / (time.perf_counter() - start)
            one = one or rate
            rows.append({"executor": kind, "workers": workers, "sims_per_s": rate, "speedup": rate / one})
    return rows


# -- command line ---------------------------------------------------------------------------------


def format_tables(overhead: list[dict], scaling: list[dict], call_ms: float) -> str:
    lines = ["## Overhead (two moons)", "", "| | seconds | ratio to raw |", "|---|---:|---:|"]
    lines += [f"| {r['what']} | {r['seconds']:.3f} | {r['ratio']:.2f}x |" for r in overhead]
    lines += ["", f"## Scaling (simulator of ~{call_ms:g} ms CPU per call)", "",
              "| executor | workers | simulations/s | speed-up over 1 worker |", "|---|---:|---:|---:|"]
    lines += [f"| {r['executor']} | {r['workers']} | {r['sims_per_s']:.1f} | {r['speedup']:.2f}x |" for r in scaling]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pyro_lfi.benchmark.simulation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-simulations", type=int, default=1_000_000, help="two-moons simulations (overhead)")
    parser.add_argument("--overhead-batch-sizes", type=int, nargs="+", default=[1_000_000, 100_000, 10_000])
    parser.add_argument("--repeats", type=int, default=3, help="overhead timings are the best of this many")
    parser.add_argument("--calls", type=int, default=400, help="simulations of the costly simulator (scaling)")
    parser.add_argument("--call-ms", type=float, default=10.0, help="CPU milliseconds per costly simulation")
    parser.add_argument("--batch-size", type=int, default=10, help="simulations per chunk sent to a worker")
    parser.add_argument("--no-dask", action="store_true", help="skip dask.distributed even if installed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    kinds = ["process pool"]
    if not args.no_dask and importlib.util.find_spec("distributed") is not None:
        kinds.append("dask LocalCluster")
    print(f"# pyro_lfi simulation benchmark, {time.strftime('%Y-%m-%d')}, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    overhead = measure_overhead(args.num_simulations, args.overhead_batch_sizes, args.repeats, args.seed)
    scaling = measure_scaling(args.calls, args.call_ms, args.batch_size, kinds, args.seed)
    print(format_tables(overhead, scaling, args.call_ms))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "overhead": overhead, "scaling": scaling}, f, indent=1)


if __name__ == "__main__":
    main()
