"""A sequential campaign on the pyloric network, where almost every prior simulation fails.

Sequential NPE at the features of :data:`~pyro_lfi.models.pyloric.BURSTING_CIRCUIT`, in one of
several *arms* that differ in the method and in how they treat invalid simulations (a rhythm
without bursts in some neuron, so some of the 18 features are NaN):

- ``"tsnpe"``: proposals from the prior truncated to the posterior's highest-density region
  (Deistler et al. 2022); the guide is trained on the fully valid rows;
- ``"apt"``: proposals from the posterior estimate at the observation itself (atomic APT,
  Greenberg et al. 2019);
- ``-restricted``: the proposal also cut to where a classifier predicts a valid rhythm
  (:class:`~pyro_lfi.Restriction`);
- ``-impute``: the guide also trained on rows with some features defined
  (``NeuralPosterior(missing="impute")``), so the posterior at a valid rhythm learns from every
  partial one.

Reported per round: the valid fraction (all 18 features finite), the guide's training rows and
the times; per arm, how many posterior-predictive draws at the observation give a valid rhythm.
"""

from __future__ import annotations

import functools
import time
import warnings

import torch

import pyro_lfi as lfi
from pyro_lfi.models import pyloric as pl

__all__ = ["ARMS", "format_campaign", "measure_campaign"]

ARMS = ("tsnpe", "tsnpe-restricted", "tsnpe-impute", "tsnpe-restricted-impute", "apt", "apt-restricted")


def measure_campaign(protocol: pl.Protocol, first: int, rounds: int, per_round: int, arm: str = "tsnpe-restricted",
                     false_negatives: float = 0.05, backend: str = "auto", seed: int = 4, max_epochs: int = 200,
                     num_predictive: int = 1_000) -> list[dict]:
    """Run one arm of the campaign (a first round of ``first`` prior simulations, then
    ``rounds - 1`` of ``per_round``) and return one row per round; every row also carries the
    arm's posterior-predictive valid fraction (``num_predictive`` draws at the observation)."""
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
    model = functools.partial(pl.pyloric_model, protocol=protocol, backend=backend)
    simulator = functools.partial(pl.pyloric_simulator, protocol=protocol, backend=backend)
    torch.manual_seed(seed)
    x_o = simulator(torch.tensor([pl.BURSTING_CIRCUIT]))[0]
    method, *options = arm.split("-")
    restriction = lfi.Restriction(false_negatives=false_negatives) if "restricted" in options else None
    guide = lfi.NeuralPosterior(model, observed="x", missing="impute" if "impute" in options else "drop")
    snpe = lfi.SNPE(model, guide, method=method, restrict=restriction, progress=False, max_epochs=max_epochs,
                    seed=seed)
    start = time.perf_counter()
    with warnings.catch_warnings():  # round 0 warns that few rows are valid: that is the point
        warnings.simplefilter("ignore", UserWarning)
        snpe.run(x=x_o, num_rounds=1, simulations_per_round=first, seed=seed)
        snpe.run(x=x_o, num_rounds=rounds - 1, simulations_per_round=per_round, seed=seed + 1)
    wall = time.perf_counter() - start
    torch.manual_seed(seed + 2)
    predicted = simulator(guide.sample(num_predictive, x=x_o)["theta"])
    predictive_valid = predicted.isfinite().all(-1).double().mean().item()
    return [{"arm": arm, "round": r.round, "proposal": r.proposal, "num": r.num_simulations,
             "valid_fraction": 1.0 - r.fraction_invalid, "training_rows": r.num_training_rows,
             "simulate_seconds": r.simulate_seconds, "train_seconds": r.train_seconds,
             "propose_seconds": r.propose_seconds, "wall_seconds": wall, "predictive_valid": predictive_valid}
            for r in snpe.rounds]


def format_campaign(rows: list[dict]) -> str:
    """The campaign's rounds as a Markdown table, then each arm's totals."""
    lines = ["| arm | round | proposal | simulations | valid fraction | training rows | propose s | simulate s "
             "| train s |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['arm']} | {r['round']} | {r['proposal']} | {r['num']:,} | {r['valid_fraction']:.1%} | "
              f"{r['training_rows']:,} | {r['propose_seconds']:.1f} | {r['simulate_seconds']:.1f} | "
              f"{r['train_seconds']:.1f} |" for r in rows]
    lines += ["", "| arm | simulations | valid | wall s | posterior-predictive valid |", "|---|---:|---:|---:|---:|"]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        own = [r for r in rows if r["arm"] == arm]
        total = sum(r["num"] for r in own)
        valid = round(sum(r["num"] * r["valid_fraction"] for r in own))
        lines.append(f"| {arm} | {total:,} | {valid:,} ({valid / total:.1%}) | {own[-1]['wall_seconds']:.0f} | "
                     f"{own[-1]['predictive_valid']:.1%} |")
    return "\n".join(lines)
