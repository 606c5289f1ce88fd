"""``python -m pyro_lfi.benchmark.pyloric``: throughput of the pyloric network simulator.

Both implementations of the same exponential-Euler scheme in :mod:`pyro_lfi.models.pyloric`
(dt = 0.025 ms), timed side by side on the same prior draws and the same noise tensor, from
parameters to the 18 features, float32, on ``torch.get_num_threads()`` threads:

- **eager**: :func:`~pyro_lfi.models.pyloric.simulate_reference` (one torch operation per term,
  a Python loop over the steps for the whole batch) and
  :func:`~pyro_lfi.models.pyloric.summary_features`; slow, so only at ``--eager-batch-sizes``;
- **fused**: :func:`~pyro_lfi.models.pyloric.simulate` (``torch.compile``-d blocks of 10 steps,
  only the threshold crossings kept).

The first fused call (compilation, or a load from inductor's on-disk cache) is timed separately
and excluded from the rates. Also measured: the fraction of rows with the same features fused
vs eager (same NaN pattern, finite features within ``--rtol``/``--atol``), the valid fraction
(all 18 features finite) of ``--num-prior`` prior draws, and simulations per minute through
``pyro_lfi.simulate(pyloric_model, n)`` on a 2-worker ``dask.distributed`` ``LocalCluster``
(workers warmed up first; skipped when dask.distributed is not installed).

With ``--campaign-rounds R`` (R >= 2), also a sequential campaign at the features of
:data:`~pyro_lfi.models.pyloric.BURSTING_CIRCUIT` (:mod:`.pyloric_campaign`): TSNPE or APT with a
first round of ``--campaign-first`` prior simulations and R - 1 rounds of
``--campaign-simulations``, in each of ``--campaign-arms`` (the method; the proposal restricted to
where a classifier predicts a valid rhythm or not; the guide trained on partly valid rows or not),
reporting the valid fraction, training rows and times of every round and each arm's
posterior-predictive valid fraction.

The default protocol (2 s, 0.5 s burn-in) keeps the run to a few minutes on a laptop core; the
published one is 11 s with 1 s burn-in (``--duration-ms 11000 --burn-in-ms 1000``). Rates scale
as 1 / duration. Published target: the fused simulator ≥ 5x the simulations/min of the eager one.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import platform
import time
import warnings

import torch

import pyro_lfi as lfi
from pyro_lfi.models import pyloric as pl

from .pyloric_campaign import ARMS, format_campaign, measure_campaign
from .simulation import dask_cluster

__all__ = ["draws", "format_campaign", "format_report", "main", "measure", "measure_agreement", "measure_campaign",
           "measure_compile", "measure_dask", "measure_valid"]

TARGET_SPEEDUP = 5.0


def draws(num: int, protocol: pl.Protocol, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` float32 prior draws ``[num, 31]`` and standard normal noise ``[num, 3, num_steps]``."""
    torch.manual_seed(seed)
    params = pl.pyloric_prior(torch.float32).sample((num,))
    noise = torch.randn(num, 3, protocol.num_steps, generator=torch.Generator().manual_seed(seed + 1))
    return params, noise


def measure_compile(protocol: pl.Protocol, backend: str = "auto") -> float:
    """Seconds of the first fused calls in this process (compilation or cache load), on 2 and then
    40 parameter sets (the kernel for one chunk size, then the one dynamic in the chunk size), over
    20 steps: the kernels depend on the protocol's constants, not on its duration."""
    short = dataclasses.replace(protocol, duration=20 * protocol.dt, burn_in=0.0)
    params, noise = draws(40, short, seed=12345)
    start = time.perf_counter()
    for n in (2, 40):
        pl.simulate(params[:n], noise[:n], protocol=short, backend=backend)
    return time.perf_counter() - start


def measure(implementation: str, params: torch.Tensor, noise: torch.Tensor, protocol: pl.Protocol,
            backend: str = "auto", chunk_size: int | None = None) -> tuple[dict, torch.Tensor]:
    """Simulations per minute of ``"eager"`` or ``"fused"`` on ``params`` and ``noise``; and the features."""
    start = time.perf_counter()
    if implementation == "eager":
        features = pl.summary_features(pl.simulate_reference(params, noise, protocol=protocol), protocol)
    elif implementation == "fused":
        features = pl.simulate(params, noise, protocol=protocol, backend=backend, chunk_size=chunk_size)
    else:
        raise ValueError(f"implementation must be 'eager' or 'fused', got {implementation!r}")
    seconds = time.perf_counter() - start
    batch = params.shape[0]
    row = {"implementation": implementation, "batch": batch, "seconds": seconds,
           "sims_per_min": 60.0 * batch / seconds, "valid": int(features.isfinite().all(-1).sum())}
    return row, features


def measure_agreement(fused: torch.Tensor, eager: torch.Tensor, rtol: float = 1e-2, atol: float = 1e-2) -> dict:
    """Fraction of rows with the same features: the same NaN pattern, finite ones within tolerance."""
    same = torch.isclose(fused.double(), eager.double(), rtol=rtol, atol=atol, equal_nan=True).all(-1)
    return {"num": int(same.numel()), "same_features": same.double().mean().item() if same.numel() else math.nan,
            "rtol": rtol, "atol": atol}


def measure_valid(num: int, protocol: pl.Protocol, backend: str = "auto", seed: int = 2) -> dict:
    """Fraction of ``num`` prior draws whose 18 features are all finite (fused simulator)."""
    params, noise = draws(num, protocol, seed)
    features = pl.simulate(params, noise, protocol=protocol, backend=backend)
    valid = features.isfinite().all(-1)
    return {"num": num, "valid_fraction": valid.double().mean().item()}


def measure_dask(num: int, protocol: pl.Protocol, backend: str = "auto", workers: int = 2, seed: int = 3) -> dict:
    """Simulations per minute of ``pyro_lfi.simulate(pyloric_model, num)`` on a dask ``LocalCluster``."""
    with dask_cluster(workers) as client:
        kwargs = {"progress": False, "executor": client, "protocol": protocol, "backend": backend}
        with warnings.catch_warnings():  # warm-up and compilation; its 20-step rows are all invalid
            warnings.simplefilter("ignore")
            short = dataclasses.replace(protocol, duration=20 * protocol.dt, burn_in=0.0)
            for rows in (1, 33):  # the kernel for one chunk size, then the one dynamic in it
                lfi.simulate(pl.pyloric_model, 2 * workers * rows, seed=seed + 1, batch_size=rows,
                             **{**kwargs, "protocol": short})
        start = time.perf_counter()
        lfi.simulate(pl.pyloric_model, num, seed=seed, batch_size=max(1, math.ceil(num / workers)), **kwargs)
        seconds = time.perf_counter() - start
    return {"workers": workers, "num": num, "seconds": seconds, "sims_per_min": 60.0 * num / seconds}


def _rate_lines(rates: list[dict]) -> list[str]:
    eager = {r["batch"]: r["sims_per_min"] for r in rates if r["implementation"] == "eager"}
    lines = []
    for r in rates:
        base = eager.get(r["batch"])
        speedup = f"{r['sims_per_min'] / base:.1f}x" if base else "-"
        lines.append(f"| {r['implementation']} | {r['batch']:,} | {r['sims_per_min']:,.1f} | {speedup} | "
                     f"{r['valid']} of {r['batch']} |")
    return lines


def format_report(rates: list[dict], compile_seconds: float, agreement: dict, valid: dict,
                  dask: dict | str, protocol: pl.Protocol) -> str:
    """The results as Markdown: rates and speed-ups, agreement, valid fraction, dask throughput."""
    best = {k: max((r["sims_per_min"] for r in rates if r["implementation"] == k), default=math.nan)
            for k in ("eager", "fused")}
    lines = [f"## Throughput ({protocol.duration:g} ms at dt = {protocol.dt:g} ms, {protocol.burn_in:g} ms burn-in, "
             f"{protocol.temperature:g} K, to 18 features, float32)", "",
             "| implementation | batch | simulations/min | speed-up over eager (same batch) | valid rows |",
             "|---|---:|---:|---:|---:|"]
    lines += _rate_lines(rates)
    lines += ["", f"Best fused over best eager: {best['fused'] / best['eager']:.1f}x "
              f"(published target: >= {TARGET_SPEEDUP:g}x).",
              f"Fused: first call (compilation or inductor cache load), excluded above: {compile_seconds:.1f} s.", "",
              "## Same draws, same noise, same features", "",
              f"Rows with the same features, fused vs eager (same NaN pattern, finite features within "
              f"rtol {agreement['rtol']:g}, atol {agreement['atol']:g}): "
              f"{agreement['same_features']:.0%} of {agreement['num']}.", "",
              "## Under the prior", "",
              f"Valid fraction (all 18 features finite): {valid['valid_fraction']:.1%} of {valid['num']} prior draws.",
              "", "## Through pyro_lfi.simulate", ""]
    if isinstance(dask, dict):
        lines.append(f"pyro_lfi.simulate(pyloric_model, {dask['num']:,}) on {dask['workers']} dask workers "
                     f"(warmed up): {dask['sims_per_min']:,.1f} simulations/min.")
    else:
        lines.append(f"Skipped: {dask}.")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pyro_lfi.benchmark.pyloric", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 256], help="of the fused simulator")
    parser.add_argument("--eager-batch-sizes", type=int, nargs="+", default=[1, 16],
                        help="of the eager reference (slow)")
    parser.add_argument("--num-prior", type=int, default=256, help="prior draws of the valid fraction")
    parser.add_argument("--dask-simulations", type=int, default=256, help="simulations through dask (0: skip)")
    parser.add_argument("--no-dask", action="store_true", help="skip dask.distributed even if installed")
    parser.add_argument("--duration-ms", type=float, default=2000.0)
    parser.add_argument("--burn-in-ms", type=float, default=500.0)
    parser.add_argument("--rtol", type=float, default=1e-2, help="of the feature agreement")
    parser.add_argument("--atol", type=float, default=1e-2, help="of the feature agreement")
    parser.add_argument("--backend", default="auto", choices=["auto", "inductor", "eager"],
                        help="of the fused implementation ('eager': the same blocks uncompiled)")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--campaign-rounds", type=int, default=0,
                        help="rounds of the sequential campaign (0: skip it)")
    parser.add_argument("--campaign-first", type=int, default=10_000, help="prior simulations of its first round")
    parser.add_argument("--campaign-simulations", type=int, default=2_000, help="simulations of each later round")
    parser.add_argument("--campaign-arms", nargs="+", choices=ARMS, default=list(ARMS),
                        help="how the campaign treats invalid simulations (see pyloric_campaign)")
    parser.add_argument("--false-negatives", type=float, default=0.05,
                        help="the restriction's fraction of valid simulations allowed below its threshold")
    parser.add_argument("--json", help="also write the results to this JSON file")
    return parser


def _dask(args: argparse.Namespace, protocol: pl.Protocol) -> dict | str:
    if args.no_dask or args.dask_simulations <= 0:
        return "dask measurement switched off"
    if importlib.util.find_spec("distributed") is None:
        return "dask.distributed is not installed"
    return measure_dask(args.dask_simulations, protocol, args.backend)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    protocol = pl.Protocol(duration=args.duration_ms, burn_in=args.burn_in_ms)
    print(f"# pyro_lfi pyloric benchmark, {time.strftime('%Y-%m-%d')}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}", flush=True)
    params, noise = draws(max(args.batch_sizes + args.eager_batch_sizes), protocol, args.seed)
    compile_seconds = measure_compile(protocol, args.backend)
    rates, features = [], {}
    for implementation, sizes in (("eager", args.eager_batch_sizes), ("fused", args.batch_sizes)):
        for b in sizes:
            row, features[implementation, b] = measure(implementation, params[:b], noise[:b], protocol,
                                                       args.backend, args.chunk_size)
            rates.append(row)
    shared = max(args.eager_batch_sizes)
    fused = features.get(("fused", shared))
    if fused is None:
        fused = measure("fused", params[:shared], noise[:shared], protocol, args.backend, args.chunk_size)[1]
    agreement = measure_agreement(fused, features["eager", shared], args.rtol, args.atol)
    valid = measure_valid(args.num_prior, protocol, args.backend, args.seed + 2)
    dask = _dask(args, protocol)
    print(format_report(rates, compile_seconds, agreement, valid, dask, protocol), flush=True)
    campaign = []
    if args.campaign_rounds >= 2:
        for arm in args.campaign_arms:
            campaign += measure_campaign(protocol, args.campaign_first, args.campaign_rounds, args.campaign_simulations,
                                         arm, args.false_negatives, args.backend, args.seed + 4)
        print("\n## A sequential campaign (TSNPE at the bursting circuit's rhythm)\n")
        print(format_campaign(campaign))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "threads": torch.get_num_threads(), "protocol": dataclasses.asdict(protocol),
                       "compile_seconds": compile_seconds, "rates": rates, "agreement": agreement, "valid": valid,
                       "dask": dask, "campaign": campaign}, f, indent=1)


if __name__ == "__main__":
    main()
