"""``python -m pyro_lfi.benchmark``: amortized NPE, sequential NPE (APT, TSNPE) focused on one
observation, and learned likelihoods and ratios (NLE, NRE, SNLE, SNRE with MCMC), on tasks with
reference posteriors, side by side with sbi in the same run."""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time

import torch

from ..infer.sequential.site_rounds import SAMPLERS
from ..model.sites import BOUNDED
from .likelihoods import LIKELIHOOD_LABELS
from .runner import SEQUENTIAL_LABELS, format_table, run_likelihood_benchmark, run_sequential_task, run_task
from .tasks import TASKS, get_task


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pyro_lfi.benchmark", description=__doc__)
    parser.add_argument("--tasks", nargs="+", default=["two_moons", "gaussian_linear", "slcp"],
                        choices=sorted(TASKS))
    parser.add_argument("--num-simulations", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--estimator", default="nsf", choices=["nsf", "maf", "mdn", "fmpe", "npse"],
                        help="the estimator of both libraries (fmpe, npse: sbi's FMPE, NPSE; amortized mode only)")
    parser.add_argument("--num-draws", type=int, default=10_000,
                        help="posterior draws per method (and reference draws) for C2ST and the sampling time")
    parser.add_argument("--no-sbi", action="store_true", help="skip sbi even if it is installed")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--mode", choices=["amortized", "sequential", "both", "likelihood"], default="both",
                        help="amortized NPE on --tasks, sequential NPE on --sequential-tasks, or both; "
                             "learned likelihoods and ratios on --likelihood-tasks")
    parser.add_argument("--sequential-tasks", nargs="+", default=["two_moons", "slcp"], choices=sorted(TASKS))
    parser.add_argument("--sequential-methods", nargs="+", default=["apt", "tsnpe"], choices=list(SEQUENTIAL_LABELS),
                        help="pyro_lfi's sequential methods to run (SNPE-A always with a mixture density guide)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of a sequential run (budget split evenly)")
    parser.add_argument("--bounded", choices=BOUNDED, default="transform",
                        help="how pyro_lfi's sequential guides model sites with a Uniform prior: through the logit, "
                             "or truncated to the prior's box (NeuralPosterior(..., bounded=...); not SNPE-A)")
    parser.add_argument("--likelihood-tasks", nargs="+", default=["slcp"], choices=sorted(TASKS))
    parser.add_argument("--likelihood-methods", nargs="+", default=["nle", "snle"], choices=list(LIKELIHOOD_LABELS),
                        help="learned likelihoods and ratios (--mode likelihood): NLE, NRE, SNLE, SNRE")
    parser.add_argument("--likelihood-sampler", choices=list(SAMPLERS), default="importance",
                        help="how pyro_lfi draws a learned likelihood's posterior (--mode likelihood): adaptive "
                             "importance sampling or multi-chain NUTS")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.estimator in ("fmpe", "npse") and args.mode != "amortized":
        parser.error(f"--estimator {args.estimator} (an ODE estimator) is benchmarked in --mode amortized only")

    with_sbi = not args.no_sbi and importlib.util.find_spec("sbi") is not None
    if not with_sbi and not args.no_sbi:
        print("sbi is not installed (pip install sbi): running pyro_lfi alone", file=sys.stderr)
    print(f"# pyro_lfi benchmark, {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    results = []
    jobs = []
    if args.mode in ("amortized", "both"):
        jobs += [lambda t=t: run_task(get_task(t), args.num_simulations, args.seed, with_sbi, args.estimator,
                                 args.num_draws)
                 for t in args.tasks]
    if args.mode in ("sequential", "both"):
        per_round = args.num_simulations // args.rounds
        jobs += [lambda t=t: run_sequential_task(get_task(t), args.rounds, per_round, args.seed, with_sbi,
                                                 args.estimator, args.num_draws, tuple(args.sequential_methods),
                                                 args.bounded)
                 for t in args.sequential_tasks]
    if args.mode == "likelihood":
        per_round = args.num_simulations // args.rounds
        jobs += [lambda t=t: run_likelihood_benchmark(get_task(t), args.rounds, per_round, args.seed, with_sbi,
                                                      args.num_draws, tuple(args.likelihood_methods),
                                                      args.likelihood_sampler)
                 for t in args.likelihood_tasks]
    for job in jobs:
        results += job()
        print(format_table(results), file=sys.stderr, flush=True)  # so far, in case of interruption
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.as_dict() for r in results], f, indent=2)


if __name__ == "__main__":
    main()
