r"""SLCP reference posteriors: NUTS on the tractable model plus its exact symmetry.

The SLCP likelihood depends on :math:`\theta_3, \theta_4` only through
:math:`s_1 = \theta_3^2, s_2 = \theta_4^2`, and the prior :math:`U(-3, 3)^5` is invariant
under :math:`\theta_3 \to -\theta_3`, :math:`\theta_4 \to -\theta_4`. So the posterior is
invariant under the group :math:`G = \{\pm1\}^2` of these sign flips and has four mirrored
copies of every mode. Rather than hoping chains hop between the copies, NUTS samples the
*folded* posterior, i.e. the same model with :math:`\theta_3, \theta_4 \in (0, 3)`, whose
density is :math:`4\,p(\theta \mid x_o)` there. Flipping the signs of
:math:`(\theta_3, \theta_4)` of each draw with independent fair coins maps it to
:math:`\sum_{g \in G} \tfrac14\, 4\, p(g\theta \mid x_o) 1_{(0,3)^2}(g\theta) =
p(\theta \mid x_o)`: exact, no approximation beyond the MCMC itself.

Validation (:func:`validate`): self-normalized importance sampling with the folded prior as
proposal (millions of draws, weights = likelihood), which involves no MCMC at all, gives
posterior means and standard deviations of :math:`(\theta_1, \theta_2, |\theta_3|,
|\theta_4|, \theta_5)`; the NUTS samples must match them to within a few Monte Carlo
standard errors, and the chains' split-:math:`\hat R` must be close to 1. For the five
fixed observations (IS effective sample sizes 3,400-207,000 from :math:`2^{26}` draws;
NUTS ESS 2,800-6,600) every :math:`|z| < 2`, :math:`\hat R \le 1.002`, and the standard
deviations agree to within 5 % (ratios 0.95-1.05). Beyond the NUTS 99 % quantiles IS finds
1.1-1.2 % rather than 1 % of the mass (observation 1): the wide-scale tail, where
:math:`(\theta_1, \theta_2)` spread over the box, is explored slowly.

Because 10,000 NUTS draws (4 chains x 1000 warmup + 5000 steps, thinned by 2) take about
10 minutes per observation on one core (Pyro's NUTS costs ~2 ms per leapfrog step here, its
trees have ~10-20 steps), samples for the fixed observations
are cached in ``pyro_lfi/benchmark/data/slcp_<index>.npz``; regenerate them with
``python -m pyro_lfi.benchmark.references`` (prints the validation). The cache is keyed by the
observation's index and what generated it (:mod:`pyro_lfi.benchmark.reference_cache`), not by
its floats: those differ in their last bits between CPUs, so :func:`slcp_reference` matches an
``x_o`` to the cached observations within rounding.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
import warnings
from pathlib import Path

import numpy as np
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import MCMC, NUTS
from pyro.ops.stats import effective_sample_size, split_gelman_rubin
from torch import Tensor

from pyro_lfi.benchmark import reference_cache
from pyro_lfi.benchmark.tasks import get_task, slcp_scale_tril

__all__ = [
    "ReferenceCacheWarning",
    "cache_key",
    "cached_references",
    "importance_moments",
    "slcp_log_likelihood",
    "slcp_nuts",
    "slcp_reference",
    "slcp_reference_at",
    "validate",
]

DATA_DIR = Path(__file__).parent / "data"
#: Box of the folded posterior: :math:`\theta_3, \theta_4 \ge 0`.
FOLDED_LOW = (-3.0, -3.0, 0.0, 0.0, -3.0)
HIGH = 3.0


def slcp_log_likelihood(theta: Tensor, x_o: Tensor) -> Tensor:
    r"""``log p(x_o | theta)`` for ``theta[..., 5]`` and one observation ``x_o[8]``.

    Per point, with :math:`L = \begin{pmatrix} a & 0 \\ b & c \end{pmatrix}` and
    :math:`y = x - m`: :math:`z_1 = y_1 / a`, :math:`z_2 = (y_2 - b z_1) / c`,
    :math:`\log p = -\tfrac12 (z_1^2 + z_2^2) - \log(a c) - \log 2\pi`.
    """
    loc, tril = slcp_scale_tril(theta)
    a, b, c = tril[..., 0, 0, None], tril[..., 1, 0, None], tril[..., 1, 1, None]
    points = x_o.reshape(4, 2).to(theta.dtype)
    y1 = points[:, 0] - loc[..., 0, None]
    y2 = points[:, 1] - loc[..., 1, None]
    z1 = y1 / a
    z2 = (y2 - b * z1) / c
    per_point = -0.5 * (z1**2 + z2**2) - torch.log(a * c) - math.log(2 * math.pi)
    return per_point.sum(-1)


def _folded_prior() -> dist.Distribution:
    return dist.Uniform(torch.tensor(FOLDED_LOW), torch.full((5,), HIGH)).to_event(1)


def _to_box(z: Tensor) -> tuple[Tensor, Tensor]:
    r"""Map unconstrained ``z`` to the folded box, :math:`\theta = l + w\,\sigma(z)`, and
    return :math:`\log|\partial\theta/\partial z|` up to a constant."""
    low = torch.tensor(FOLDED_LOW, dtype=z.dtype)
    theta = low + (HIGH - low) * torch.sigmoid(z)
    return theta, (F.logsigmoid(z) + F.logsigmoid(-z)).sum(-1)


def _good_start(x_o: Tensor, num_candidates: int = 20_000) -> Tensor:
    """Highest-likelihood draw among ``num_candidates`` folded-prior draws."""
    candidates = _folded_prior().sample((num_candidates,))
    return candidates[slcp_log_likelihood(candidates, x_o).argmax()]


def slcp_nuts(
    x_o: Tensor,
    num_samples: int,
    *,
    num_chains: int = 4,
    warmup_steps: int = 1000,
    thin: int = 2,
) -> tuple[Tensor, Tensor]:
    r"""NUTS draws of the *folded* SLCP posterior, run chain by chain on the global RNG.

    NUTS runs on :math:`z = \operatorname{logit}((\theta - l) / w)` with the potential
    :math:`-\log p(x_o \mid \theta) - \log|\partial\theta/\partial z|` (the prior is
    flat on the box), adapting a dense mass matrix; each chain starts at a high-likelihood
    prior draw. With a diagonal mass matrix the effective sample size of
    :math:`\theta_3, \theta_4, \theta_5` was 3-10x lower.

    :returns: ``(samples[num_samples, 5], chains[num_chains, per_chain, 5])``.
    """
    x_o = x_o.double()

    def potential(params: dict[str, Tensor]) -> Tensor:
        theta, log_jac = _to_box(params["z"])
        return -(slcp_log_likelihood(theta, x_o) + log_jac)

    low = torch.tensor(FOLDED_LOW, dtype=torch.float64)
    per_chain = math.ceil(num_samples / num_chains)
    chains = []
    for _ in range(num_chains):
        u = (_good_start(x_o).double() - low) / (HIGH - low)
        kernel = NUTS(potential_fn=potential, full_mass=True)
        mcmc = MCMC(
            kernel,
            num_samples=per_chain * thin,
            warmup_steps=warmup_steps,
            initial_params={"z": torch.logit(u)},
            disable_progbar=True,
        )
        mcmc.run()
        chains.append(_to_box(mcmc.get_samples()["z"][::thin])[0])
    stacked = torch.stack(chains)
    flat = stacked.reshape(-1, 5)
    return flat[torch.randperm(flat.shape[0])[:num_samples]], stacked


def _unfold(folded: Tensor) -> Tensor:
    """Flip signs of ``theta_3, theta_4`` with independent fair coins (global RNG)."""
    signs = torch.where(torch.rand(folded.shape[0], 2) < 0.5, -1.0, 1.0)
    out = folded.clone()
    out[:, 2:4] *= signs.to(folded.dtype)
    return out


class ReferenceCacheWarning(UserWarning):
    """A reference posterior is not in the cache and is computed (slowly)."""


def cache_key(index: int) -> reference_cache.CacheKey:
    """What identifies the cached reference of SLCP observation ``index``."""
    task = get_task("slcp")
    return reference_cache.CacheKey(
        task.name, index, task.observation_seed(index), tuple(task.true_parameters[index - 1])
    )


def cache_path(index: int) -> Path:
    """The cache file of SLCP observation ``index``."""
    return DATA_DIR / f"slcp_{index}.npz"


@functools.cache
def cached_references() -> tuple[reference_cache.CachedReference, ...]:
    """Every cache file in :data:`DATA_DIR`, read once."""
    return tuple(reference_cache.read(path) for path in sorted(DATA_DIR.glob("slcp_*.npz")))


def _subset(samples: np.ndarray, num_samples: int, seed: int) -> Tensor:
    """A ``seed``-dependent random subset of ``num_samples`` cached samples."""
    rows = torch.randperm(samples.shape[0], generator=torch.Generator().manual_seed(seed))[:num_samples]
    return torch.from_numpy(samples)[rows].to(torch.get_default_dtype())


def _nuts_reference(x_o: Tensor, num_samples: int, why: str | None = None) -> Tensor:
    """NUTS draws of the (unfolded) posterior; ``why``: the cache miss to warn about."""
    if why is not None:
        warnings.warn(f"{why}: running NUTS for the SLCP reference (minutes)", ReferenceCacheWarning, stacklevel=3)
    folded, _ = slcp_nuts(x_o, num_samples)
    return _unfold(folded)


def slcp_reference_at(index: int, num_samples: int, seed: int, *, use_cache: bool = True) -> Tensor:
    """Reference samples of the SLCP posterior given ``observation(index)`` (uses the global RNG).

    The cache entry is found by :func:`cache_key`; the regenerated observation must match the
    cached one within rounding (:func:`reference_cache.check_observation`, else
    :class:`reference_cache.ObservationMismatchError`). Then a ``seed``-dependent random subset
    of the cached samples is returned; without an entry, or for more samples than cached, NUTS
    runs (minutes) with a :class:`ReferenceCacheWarning`.
    """
    x_o = get_task("slcp").observation(index)
    if not use_cache:
        return _nuts_reference(x_o, num_samples)
    key = cache_key(index)
    entry = next((e for e in cached_references() if e.key == key), None)
    if entry is None:
        return _nuts_reference(x_o, num_samples, f"no cached reference with key {key}")
    reference_cache.check_observation(entry, x_o.numpy())
    if num_samples > entry.samples.shape[0]:
        return _nuts_reference(x_o, num_samples, f"{num_samples} samples asked, {entry.samples.shape[0]} cached")
    return _subset(entry.samples, num_samples, seed)


def slcp_reference(x_o: Tensor, num_samples: int, seed: int, *, use_cache: bool = True) -> Tensor:
    """Reference samples of the SLCP posterior given any ``x_o`` (uses the global RNG).

    If ``x_o`` matches a cached observation within rounding (:data:`reference_cache.RTOL`) and at
    most the cached number of samples is requested, a ``seed``-dependent random subset of the
    cached samples is returned; otherwise NUTS runs (minutes) with a :class:`ReferenceCacheWarning`.
    """
    if not use_cache:
        return _nuts_reference(x_o, num_samples)
    observed = x_o.detach().cpu().numpy()
    entries = cached_references()
    if not entries:
        return _nuts_reference(x_o, num_samples, f"no cache files in {DATA_DIR}")
    nearest = min(entries, key=lambda e: reference_cache.mismatch(observed, e.x_o))
    error = reference_cache.mismatch(observed, nearest.x_o)
    if error > reference_cache.RTOL:
        why = (f"x_o is no cached observation (nearest: {nearest.path.name}, off by {error:.3g} of its scale, "
               f"tolerance {reference_cache.RTOL:g})")
        return _nuts_reference(x_o, num_samples, why)
    if num_samples > nearest.samples.shape[0]:
        return _nuts_reference(x_o, num_samples, f"{num_samples} samples asked, {nearest.samples.shape[0]} cached")
    return _subset(nearest.samples, num_samples, seed)


def importance_moments(x_o: Tensor, num_draws: int = 2**24, batch: int = 2**20) -> tuple[Tensor, Tensor, float]:
    r"""Posterior mean and std of the folded parameters by prior importance sampling.

    Proposal: the folded prior; weights :math:`w_i \propto p(x_o \mid \theta_i)`.
    Returns ``(mean[5], std[5], ess)`` with :math:`\mathrm{ESS} = (\sum w)^2 / \sum w^2`.
    """
    proposal = _folded_prior()
    log_w, thetas = [], []
    for start in range(0, num_draws, batch):
        theta = proposal.sample((min(batch, num_draws - start),)).double()
        lw = slcp_log_likelihood(theta, x_o.double())
        keep = lw > lw.max() - 40  # the rest has negligible weight
        log_w.append(lw[keep])
        thetas.append(theta[keep])
    lw, theta = torch.cat(log_w), torch.cat(thetas)
    w = torch.softmax(lw, dim=0)
    mean = (w[:, None] * theta).sum(0)
    std = (w[:, None] * (theta - mean) ** 2).sum(0).sqrt()
    return mean, std, float(1.0 / (w**2).sum())


def validate(x_o: Tensor, chains: Tensor, num_draws: int = 2**26) -> dict[str, Tensor | float]:
    r"""Compare NUTS chains ``[num_chains, n, 5]`` of the folded posterior with prior IS.

    Returns the IS effective sample size, the split-:math:`\hat R` and bulk ESS of the
    chains, ``z``: the difference of the means over its Monte Carlo standard error
    :math:`\sqrt{\sigma^2/\mathrm{ESS}_{IS} + \sigma^2/\mathrm{ESS}_{NUTS}}` (|z| of a
    few is noise), and ``std_ratio``: NUTS over IS posterior standard deviation.
    """
    mean, std, ess = importance_moments(x_o, num_draws)
    chains = chains.double()
    flat = chains.reshape(-1, chains.shape[-1])
    nuts_ess = effective_sample_size(chains)
    se = std * (1 / ess + 1 / nuts_ess).sqrt()
    return {
        "is_ess": ess,
        "nuts_ess": nuts_ess,
        "rhat": split_gelman_rubin(chains),
        "z": (flat.mean(0) - mean) / se,
        "std_ratio": flat.std(0) / std,
    }


def migrate() -> None:
    """Rewrite version-0 cache files in the current layout, keeping their samples."""
    for path in sorted(DATA_DIR.glob("slcp_*.npz")):
        index = int(path.stem.removeprefix("slcp_"))
        done = reference_cache.migrate(path, cache_key(index), get_task("slcp").observation(index).numpy())
        print(f"{path.name}: {'migrated' if done else 'already current'}")
    cached_references.cache_clear()


def main(argv: list[str] | None = None) -> None:
    """Write (and validate) cached SLCP reference samples for the fixed observations."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--indices", type=int, nargs="*", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-validate", action="store_true")
    parser.add_argument("--migrate", action="store_true", help="only rewrite old cache files in the current layout")
    args = parser.parse_args(argv)
    if args.migrate:
        migrate()
        return
    # Tiny tensors: extra intra-op threads only add overhead (5x slower when cores are busy).
    torch.set_num_threads(1)
    task = get_task("slcp")
    DATA_DIR.mkdir(exist_ok=True)
    for index in args.indices or range(1, task.num_observations + 1):
        x_o = task.observation(index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed + index)
            start = time.perf_counter()
            folded, chains = slcp_nuts(x_o, args.num_samples)
            seconds = time.perf_counter() - start
            samples = _unfold(folded)
            report = None if args.no_validate else validate(x_o, chains)
        extra = {} if report is None else {k: np.asarray(v) for k, v in report.items()}
        reference_cache.write(
            cache_path(index), cache_key(index), x_o.numpy(), samples.numpy(),
            nuts_seed=np.asarray(args.seed + index), **extra,
        )
        print(f"slcp observation {index}: {samples.shape[0]} samples in {seconds:.1f} s")
        if report is not None:
            for name, value in report.items():
                shown = value.tolist() if isinstance(value, Tensor) else [value]
                print(f"  {name}: " + " ".join(f"{v:.3f}" for v in shown))
    cached_references.cache_clear()

if __name__ == "__main__":
    main()
