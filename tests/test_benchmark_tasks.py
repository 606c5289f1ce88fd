import dataclasses
import math
import warnings

import numpy as np
import pyro
import pytest
import torch

from pyro_lfi.benchmark import reference_cache, references
from pyro_lfi.benchmark.tasks import TASKS, get_task

NAMES = ["two_moons", "gaussian_linear", "slcp"]


def test_registry():
    assert sorted(TASKS) == sorted(NAMES)
    assert get_task("slcp") is TASKS["slcp"]
    with pytest.raises(KeyError, match="gaussian_linear, slcp, two_moons"):
        get_task("nope")


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_simulator_batching(name):
    task = get_task(name)
    assert task.prior.event_shape == (task.dim_theta,)
    theta = task.prior.sample((3, 4))
    torch.manual_seed(1)
    x = task.simulator(theta)
    assert x.shape == (3, 4, task.dim_x)
    torch.manual_seed(1)
    assert torch.equal(task.simulator(theta), x)  # deterministic given the global RNG
    assert task.simulator(theta[0, 0]).shape == (task.dim_x,)


@pytest.mark.parametrize("name", NAMES)
def test_model_traces_prior_and_observed_sites(name):
    task = get_task(name)
    trace = pyro.poutine.trace(task.model).get_trace()
    assert trace.nodes["theta"]["value"].shape == (task.dim_theta,)
    assert trace.nodes["x"]["value"].shape == (task.dim_x,)
    x_o = task.observation(1)
    conditioned = pyro.poutine.trace(task.model).get_trace(x_o)
    assert conditioned.nodes["x"]["is_observed"]
    assert torch.equal(conditioned.nodes["x"]["value"], x_o)


@pytest.mark.parametrize("name", NAMES)
def test_observations_are_fixed_and_leave_global_rng_alone(name):
    task = get_task(name)
    torch.manual_seed(0)
    first = [task.observation(i) for i in range(1, task.num_observations + 1)]
    state = torch.random.get_rng_state()
    torch.manual_seed(123)
    torch.rand(7)
    again = [task.observation(i) for i in range(1, task.num_observations + 1)]
    for a, b in zip(first, again):
        assert a.shape == (task.dim_x,)
        assert torch.equal(a, b)
    assert not torch.equal(first[0], first[1])
    torch.manual_seed(0)
    for i in range(1, task.num_observations + 1):
        task.observation(i)
    assert torch.equal(torch.random.get_rng_state(), state)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        in_double = task.observation(1)
    finally:
        torch.set_default_dtype(previous)
    assert in_double.dtype == torch.float64
    assert torch.equal(in_double.float(), first[0])
    seeds = [task.observation_seed(i) for i in range(1, task.num_observations + 1)]
    assert len(set(seeds)) == len(seeds)
    with pytest.raises(IndexError):
        task.observation_seed(0)
    with pytest.raises(IndexError):
        task.observation(0)
    with pytest.raises(IndexError):
        task.observation(task.num_observations + 1)


def test_reference_is_seeded_and_validates_input():
    task = get_task("two_moons")
    x_o = task.observation(1)
    state = torch.random.get_rng_state()
    a = task.reference_posterior(x_o, 100, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(task.reference_posterior(x_o, 100, seed=1), a)
    assert not torch.equal(task.reference_posterior(x_o, 100, seed=2), a)
    assert torch.equal(task.reference_posterior_at(1, 100, seed=1), a)
    assert torch.equal(torch.random.get_rng_state(), state)
    with pytest.raises(IndexError):
        task.reference_posterior_at(task.num_observations + 1, 10)
    with pytest.raises(ValueError, match="positive"):
        task.reference_posterior_at(1, 0)
    with pytest.raises(ValueError, match="shape"):
        task.reference_posterior(torch.zeros(3), 10)
    with pytest.raises(ValueError, match="positive"):
        task.reference_posterior(x_o, 0)


def _weighted_moments(theta: torch.Tensor, log_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    w = torch.softmax(log_w.double(), 0)
    mean = (w[:, None] * theta.double()).sum(0)
    var = (w[:, None] * (theta.double() - mean) ** 2).sum(0)
    return mean, var.sqrt(), float(1 / (w**2).sum())


@pytest.mark.parametrize("index", [1, 3])
def test_gaussian_linear_reference_matches_analytic_and_bayes_rule(index):
    task = get_task("gaussian_linear")
    x_o = task.observation(index)
    n = 20_000
    samples = task.reference_posterior(x_o, n, seed=index).double()
    assert samples.shape == (n, 10)
    # Analytic posterior N(x_o / 2, 0.05 I): mean within 5 standard errors, covariance
    # entries within 5 standard errors (sd of a sample covariance entry ~ 0.05 / sqrt(n)).
    assert torch.allclose(samples.mean(0), x_o.double() / 2, atol=5 * math.sqrt(0.05 / n))
    cov = torch.cov(samples.T)
    assert torch.allclose(cov, 0.05 * torch.eye(10, dtype=torch.float64), atol=5 * 0.05 * math.sqrt(2 / n))
    # Independent check of the formula: prior importance sampling with weights p(x_o | theta).
    gen = torch.Generator().manual_seed(index)
    theta = math.sqrt(0.1) * torch.randn(400_000, 10, generator=gen, dtype=torch.float64)
    log_w = -((x_o.double() - theta) ** 2).sum(-1) / (2 * 0.1)
    mean, std, ess = _weighted_moments(theta, log_w)
    assert ess > 2000
    assert torch.allclose(mean, x_o.double() / 2, atol=5 * math.sqrt(0.05 / ess))
    assert torch.allclose(std, torch.full((10,), math.sqrt(0.05), dtype=torch.float64), rtol=0.05)


@pytest.mark.parametrize("index", [1, 2])
def test_two_moons_reference_inside_prior_and_matches_rejection_abc(index):
    task = get_task("two_moons")
    x_o = task.observation(index)
    samples = task.reference_posterior(x_o, 20_000, seed=0).double()
    assert samples.shape == (20_000, 2)
    assert bool((samples.abs() <= 1).all())
    # Each sample lies on the posterior's moon: undoing the parameter offset leaves a point
    # p = (r cos a + 0.25, r sin a) with |r - 0.1| small and cos a >= 0.
    t1, t2 = samples[:, 0], samples[:, 1]
    p = x_o.double() - torch.stack([-(t1 + t2).abs(), t2 - t1], -1) / math.sqrt(2)
    r = torch.linalg.vector_norm(p - torch.tensor([0.25, 0.0], dtype=torch.float64), dim=-1)
    assert abs(float(r.mean()) - 0.1) < 0.002
    assert float(r.std()) == pytest.approx(0.01, rel=0.1)
    assert bool((p[:, 0] >= 0.25 - 1e-6).all())
    # Brute-force rejection ABC with a small tolerance.
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(10 + index)
    theta = task.prior.sample((6_000_000,))
    x = task.simulator(theta)
    torch.random.set_rng_state(gen_state)
    accepted = theta[torch.linalg.vector_norm(x - x_o, dim=-1) < 0.008].double()
    assert accepted.shape[0] > 400
    ref_mean, ref_std = samples.mean(0), samples.std(0)
    se = ref_std * math.sqrt(1 / accepted.shape[0] + 1 / samples.shape[0])
    assert bool(((accepted.mean(0) - ref_mean).abs() < 4 * se).all())
    assert torch.allclose(accepted.std(0), ref_std, rtol=0.1)
    # Mode balance: both branches of |theta1 + theta2| carry half the (in-prior) mass.
    frac = float(((t1 + t2) > 0).double().mean())
    abc_frac = float(((accepted[:, 0] + accepted[:, 1]) > 0).double().mean())
    assert abs(frac - abc_frac) < 4 * math.sqrt(0.25 / accepted.shape[0])


def test_slcp_simulator_moments():
    theta = torch.tensor([0.5, -1.0, 1.2, -0.8, 0.7], dtype=torch.float64)
    torch.manual_seed(3)
    x = get_task("slcp").simulator(theta.expand(50_000, 5)).reshape(-1, 2)
    s1, s2, rho = 1.2**2, 0.8**2, math.tanh(0.7)
    cov = torch.tensor([[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]], dtype=torch.float64)
    assert torch.allclose(x.mean(0), theta[:2], atol=0.02)
    assert torch.allclose(torch.cov(x.T), cov, rtol=0.03, atol=0.01)


def _no_nuts(monkeypatch) -> list[int]:
    """Record (and fake) NUTS runs: a cache hit must not run it."""
    calls = []

    def fake_nuts(x_o, num_samples):
        calls.append(num_samples)
        return torch.full((num_samples, 5), 0.5), None

    monkeypatch.setattr(references, "slcp_nuts", fake_nuts)
    return calls


def _rows_of(samples: torch.Tensor, cached: np.ndarray) -> bool:
    """Whether every row of ``samples`` is a row of ``cached`` (copied floats: exact)."""
    rows = {tuple(r) for r in cached.tolist()}
    return all(tuple(r) in rows for r in samples.float().tolist())


def test_slcp_cache_finds_every_fixed_observation_by_key(monkeypatch):
    calls = _no_nuts(monkeypatch)
    task = get_task("slcp")
    entries = {entry.key: entry for entry in references.cached_references()}
    assert len(entries) == task.num_observations
    for i in range(1, task.num_observations + 1):
        entry = entries[references.cache_key(i)]  # keyed by task, index, seed, true parameter, format
        assert entry.path == references.cache_path(i)
        assert entry.key.format_version == reference_cache.FORMAT_VERSION
        assert entry.key.true_parameter == task.true_parameters[i - 1]
        # The regenerated observation equals the cached one up to float32 rounding, whose last
        # bits depend on the CPU (observation 2 differs by 2 ulps on some machines).
        x_o = task.observation(i).numpy()
        scale = max(1.0, float(np.abs(entry.x_o).max()))
        np.testing.assert_allclose(x_o, entry.x_o, rtol=0, atol=reference_cache.RTOL * scale)
        reference_cache.check_observation(entry, x_o)
        # ... and far from every other observation, so the tolerance cannot confuse them.
        for other in entries.values():
            if other is not entry:
                assert reference_cache.mismatch(x_o, other.x_o) > 1e4 * reference_cache.RTOL
        assert entry.samples.shape == (10_000, 5)
        assert np.isfinite(entry.samples).all()
        assert (np.abs(entry.samples) <= 3).all()
        # Both entry points hit the cache: the same seeded subset of the cached samples.
        by_index = task.reference_posterior_at(i, 500, seed=7)
        assert _rows_of(by_index, entry.samples)
        assert torch.equal(task.reference_posterior(task.observation(i), 500, seed=7), by_index)
    assert calls == []


def test_slcp_cache_tolerates_rounding_but_not_another_observation(monkeypatch):
    calls = _no_nuts(monkeypatch)
    task = get_task("slcp")
    entry = {e.key: e for e in references.cached_references()}[references.cache_key(2)]
    cached = torch.from_numpy(entry.x_o)
    expected = task.reference_posterior(cached, 200, seed=3)
    assert _rows_of(expected, entry.samples)
    rounded = [
        cached.double() * (1 + 1e-7),
        torch.from_numpy(np.nextafter(entry.x_o, np.float32(np.inf))),  # one float32 ulp up
        torch.from_numpy(np.nextafter(np.nextafter(entry.x_o, np.float32(-np.inf)), np.float32(-np.inf))),
        cached + 1e-6 * torch.tensor([1.0, -1.0] * 4),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error", references.ReferenceCacheWarning)
        for x_o in rounded:
            assert not torch.equal(x_o.float(), cached)
            assert torch.equal(task.reference_posterior(x_o, 200, seed=3), expected)
    assert calls == []
    different = [cached * (1 + 1e-3), cached + 0.01, cached.clone().index_fill_(0, torch.tensor([5]), 0.0)]
    for x_o in different:
        with pytest.warns(references.ReferenceCacheWarning, match="slcp_2.npz"):
            task.reference_posterior(x_o, 200, seed=3)
    assert calls == [200] * len(different)


def _fake_entry(index: int, x_o: np.ndarray, **key_changes) -> reference_cache.CachedReference:
    key = dataclasses.replace(references.cache_key(index), **key_changes)
    samples = np.tile(np.arange(5, dtype=np.float32), (100, 1))
    return reference_cache.CachedReference(key, x_o.astype(np.float32), samples, references.cache_path(index))


def test_slcp_index_lookup_checks_the_observation_and_the_key(monkeypatch):
    calls = _no_nuts(monkeypatch)
    x_o = get_task("slcp").observation(3).numpy()
    # rounding-level difference: the cached samples
    near = np.nextafter(x_o.astype(np.float32), np.float32(np.inf))
    monkeypatch.setattr(references, "cached_references", lambda: (_fake_entry(3, near),))
    assert torch.equal(references.slcp_reference_at(3, 10, seed=0)[0], torch.arange(5.0))
    # a changed generator: a clear error, not a silent miss
    monkeypatch.setattr(references, "cached_references", lambda: (_fake_entry(3, x_o + 1e-3),))
    with pytest.raises(reference_cache.ObservationMismatchError, match=r"slcp #3 differs .* regenerate the cache"):
        references.slcp_reference_at(3, 10, seed=0)
    assert calls == []
    # another observation seed, format version or true parameter: not this entry (warned NUTS)
    for change in ({"observation_seed": 1}, {"format_version": 0}, {"true_parameter": (0.0,) * 5}):
        monkeypatch.setattr(references, "cached_references", lambda change=change: (_fake_entry(3, x_o, **change),))
        with pytest.warns(references.ReferenceCacheWarning, match="no cached reference with key"):
            references.slcp_reference_at(3, 10, seed=0)
    assert calls == [10, 10, 10]


def test_cache_migration_keeps_samples(tmp_path):
    entry = {e.key: e for e in references.cached_references()}[references.cache_key(4)]
    path = tmp_path / "slcp_4.npz"
    old_samples = entry.samples[:50]
    np.savez_compressed(path, x_o=entry.x_o, samples=old_samples, seed=np.asarray(4), rhat=np.ones(5))
    with pytest.raises(reference_cache.CacheFormatError, match="version 0"):
        reference_cache.read(path)
    regenerated = get_task("slcp").observation(4).numpy()
    with pytest.raises(reference_cache.ObservationMismatchError):
        reference_cache.migrate(path, entry.key, regenerated + 0.1)
    assert reference_cache.migrate(path, entry.key, regenerated)
    new = reference_cache.read(path)
    assert new.key == entry.key
    assert np.array_equal(new.samples, old_samples) and np.array_equal(new.x_o, entry.x_o)  # copies
    with np.load(path) as data:
        assert int(data["nuts_seed"]) == 4 and "seed" not in data.files and np.array_equal(data["rhat"], np.ones(5))
    assert not reference_cache.migrate(path, entry.key, regenerated)  # already current
    misnamed = tmp_path / "slcp_5.npz"
    np.savez_compressed(misnamed, x_o=entry.x_o, samples=old_samples, seed=np.asarray(4))
    with pytest.raises(reference_cache.CacheFormatError, match="file name"):
        reference_cache.migrate(misnamed, entry.key, regenerated)


@pytest.mark.parametrize("index", [1, 2, 3, 4, 5])
def test_slcp_reference_symmetry_and_location(index):
    task = get_task("slcp")
    samples = task.reference_posterior_at(index, 10_000, seed=0).double()
    assert samples.shape == (10_000, 5)
    # Four equally weighted mirrored modes in the signs of (theta3, theta4).
    signs = (samples[:, 2] > 0).long() * 2 + (samples[:, 3] > 0).long()
    counts = torch.bincount(signs, minlength=4).double() / samples.shape[0]
    assert torch.allclose(counts, torch.full((4,), 0.25, dtype=torch.float64), atol=0.02)
    folded = samples.clone()
    folded[:, 2:4] = folded[:, 2:4].abs()
    for quadrant in range(4):
        part = folded[signs == quadrant]
        assert torch.allclose(part.mean(0), folded.mean(0), atol=0.1)
    # The mean location (theta1, theta2) is near the truth (within 3 posterior sds), and
    # so are |theta3|, |theta4|.
    truth = task.true_parameter(index).double()
    mean, std = folded.mean(0), folded.std(0)
    assert bool(((mean[:2] - truth[:2]).abs() < 3 * std[:2]).all())
    assert bool(((mean[2:4] - truth[2:4].abs()).abs() < 3 * std[2:4]).all())
    # Subsets of the cache depend on the seed.
    one, two = (task.reference_posterior_at(index, 100, seed=s) for s in (1, 2))
    assert not torch.equal(one, two)


@pytest.mark.parametrize(
    ("index", "num_draws"),
    [(1, 2**22)] + [pytest.param(i, 2**26, marks=pytest.mark.slow) for i in (2, 3, 4, 5)],
)
def test_slcp_reference_matches_prior_importance_sampling(index, num_draws):
    """Validation of the NUTS reference against MCMC-free prior importance sampling."""
    task = get_task("slcp")
    x_o = task.observation(index)
    samples = task.reference_posterior_at(index, 10_000, seed=0).double()
    folded = samples.clone()
    folded[:, 2:4] = folded[:, 2:4].abs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(index)
        mean, std, ess = references.importance_moments(x_o, num_draws=num_draws)
    assert ess > 2000
    # NUTS draws are autocorrelated; allow an effective size of ~1/4 of the draws.
    se = std * math.sqrt(1 / ess + 4 / samples.shape[0])
    assert bool(((folded.mean(0) - mean).abs() < 4 * se).all())
    assert torch.allclose(folded.std(0), std, rtol=0.1)


def test_slcp_cache_miss_falls_back_to_nuts(monkeypatch):
    calls = _no_nuts(monkeypatch)
    task = get_task("slcp")
    with pytest.warns(references.ReferenceCacheWarning, match="no cached observation"):
        samples = task.reference_posterior(task.observation(1) + 0.01, 1000, seed=0)
    assert calls == [1000]
    assert bool((samples.abs() == 0.5).all())
    assert bool((samples[:, :2] == 0.5).all()) and bool((samples[:, 4] == 0.5).all())
    for j in (2, 3):  # the folded draws get random signs
        assert 0.4 < float((samples[:, j] > 0).float().mean()) < 0.6
    task.reference_posterior(task.observation(1), 100)  # cached
    task.reference_posterior_at(1, 100)
    assert calls == [1000]
    with pytest.warns(references.ReferenceCacheWarning, match="20000 samples asked, 10000 cached"):
        task.reference_posterior(task.observation(1), 20_000)  # more than cached
    with pytest.warns(references.ReferenceCacheWarning, match="20000 samples asked, 10000 cached"):
        task.reference_posterior_at(1, 20_000)
    assert calls == [1000, 20_000, 20_000]


@pytest.mark.slow
def test_slcp_nuts_short_run_agrees_with_cache():
    task = get_task("slcp")
    x_o = task.observation(4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        folded, chains = references.slcp_nuts(x_o, 1000, num_chains=2, warmup_steps=300)
    assert folded.shape == (1000, 5)
    assert chains.shape == (2, 500, 5)
    assert bool((folded[:, 2:4] >= 0).all())
    cached = task.reference_posterior_at(4, 10_000).double()
    cached[:, 2:4] = cached[:, 2:4].abs()
    # Generous: 1000 short-run draws have an effective size of a few hundred.
    se = cached.std(0) * math.sqrt(1 / 250 + 1 / 2500)
    assert bool(((folded.double().mean(0) - cached.mean(0)).abs() < 4 * se).all())
