# %% [markdown]
# # Many neurons, many trials: one learned likelihood inside a hierarchical Pyro model
#
# A recording session gives several neurons of one type, each stimulated over repeated trials.
# Their parameters differ, but not arbitrarily: they come from a population. A hierarchical
# model says so, population → each neuron's parameters → its iid trials, and lets every
# neuron borrow strength from the others. The simulator here, the exponential
# integrate-and-fire neuron of `pyro_lfi.models.integrate_and_fire`, has no likelihood, so
# likelihood-based inference cannot run on this model as it stands, and posterior estimation
# (NPE) would need a new network for every number of neurons and trials.
#
# A learned single-trial likelihood serves any such structure. `lfi.NLE` trains
# `lfi.NeuralLikelihood` once on single-trial simulations; `lfi.surrogate` puts it in place of
# the simulator, and the plates multiply it over neurons and trials, so Pyro's NUTS runs on
# the whole hierarchy (`lfi.posterior_chains`, chains started at importance-resampled prior
# draws). We compare it with fitting each neuron on its own by NPE (one amortized guide for
# 10 trials, applied neuron by neuron), on neurons whose true parameters we know.
#
# Run: `python tutorials/many_neurons.py` (`PYRO_LFI_FAST=1` for the small budget the test
# suite uses; `PYRO_LFI_OUT=dir` for figures).

# %%
import functools
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pyro
import pyro.distributions as dist
import torch
from torch.distributions.transforms import AffineTransform, SigmoidTransform

import pyro_lfi as lfi
from pyro_lfi.arviz_compat import group
from pyro_lfi.models import integrate_and_fire as iaf
from pyro_lfi.nn import DeepSet

FAST = os.environ.get("PYRO_LFI_FAST") == "1"
OUT = os.environ.get("PYRO_LFI_OUT", ".")
NEURONS, TRIALS = 6, 10
NLE_SIMULATIONS = 1_000 if FAST else 20_000  # single trials
NPE_SIMULATIONS = 300 if FAST else 10_000  # of 10 trials each
MAX_EPOCHS = 10 if FAST else 300
DRAWS = 20 if FAST else 800  # NUTS draws on the hierarchy, 4 chains together
WARMUP = 10 if FAST else 300  # warmup steps of each chain
TREE_DEPTH = 3 if FAST else 7
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))

# %% [markdown]
# ## The hierarchical model
#
# The membrane time constant $\tau$ and the soft threshold $V_T$ vary from neuron to neuron;
# the resting potential, the slope factor and the noise are shared (one preparation, one
# recording setup). Each varying parameter is logit-normal across the population,
# $\tau_i = 5 + 25\,\sigma(u_i)$ with $u_i \sim \mathcal N(m_\tau, s_\tau)$, so every neuron stays
# inside the range the single-trial likelihood was trained on (the single-neuron prior's),
# which `lfi.surrogate` checks at its first call. The data site is the same `Simulator` as in
# `iaf.integrate_and_fire_model`, under a plate of neurons and a plate of trials.

# %%
PRIOR = iaf.integrate_and_fire_prior()
VARYING = ("tau", "v_t")
SHARED = ("e_leak", "delta_t", "sigma")


def across_population(name: str, loc: torch.Tensor, spread: torch.Tensor) -> dist.Distribution:
    """Logit-normal on the single-neuron prior's range of ``name``."""
    low, high = PRIOR[name].low, PRIOR[name].high
    return dist.TransformedDistribution(
        dist.Normal(loc, spread), [SigmoidTransform(), AffineTransform(low, high - low)]
    )


def population_model(x=None, *, num_neurons=NEURONS, num_trials=TRIALS, protocol=iaf.DEFAULT_PROTOCOL):
    shared = {name: pyro.sample(name, PRIOR[name]) for name in SHARED}
    population = {
        name: (pyro.sample(f"{name}_loc", dist.Normal(0.0, 1.0)), pyro.sample(f"{name}_spread", dist.HalfNormal(0.5)))
        for name in VARYING
    }
    with pyro.plate("neurons", num_neurons, dim=-2):
        own = {name: pyro.sample(name, across_population(name, *population[name])) for name in VARYING}
        params = {**shared, **own}
        with pyro.plate("trials", num_trials, dim=-1):
            simulator = lfi.Simulator(
                functools.partial(iaf.integrate_and_fire_simulator, protocol=protocol),
                *(params[name] for name in iaf.PARAMETER_NAMES), event_shape=(len(iaf.FEATURE_NAMES),),
            )
            return pyro.sample("x", simulator, obs=x)


# %% [markdown]
# ## A recording of six neurons, ten trials each
#
# The neurons' true $\tau$ and $V_T$ are drawn from a population with median 14 ms and
# -50 mV; the shared parameters are those of the single-neuron tutorial.

# %%
truth_population = {"tau_loc": -0.5, "tau_spread": 0.4, "v_t_loc": 0.0, "v_t_spread": 0.3}
generator = torch.Generator().manual_seed(5)
truth = {"e_leak": torch.tensor(-68.0), "delta_t": torch.tensor(2.0), "sigma": torch.tensor(2.0)}
for name in VARYING:
    u = truth_population[f"{name}_loc"] + truth_population[f"{name}_spread"] * torch.randn(NEURONS, generator=generator)
    truth[name] = PRIOR[name].low + (PRIOR[name].high - PRIOR[name].low) * torch.sigmoid(u)
neuron_params = torch.stack([truth[name].expand(NEURONS) for name in iaf.PARAMETER_NAMES], -1)  # [neurons, 5]
torch.manual_seed(3)
x_o = iaf.integrate_and_fire_simulator(*neuron_params.repeat_interleave(TRIALS, 0).T).reshape(NEURONS, TRIALS, -1)
print("true tau per neuron:", [round(v, 1) for v in truth["tau"].tolist()])
print("true v_t per neuron:", [round(v, 1) for v in truth["v_t"].tolist()])

# %% [markdown]
# ## One learned single-trial likelihood, NUTS on the hierarchy
#
# The likelihood is trained on single trials of the single-neuron model: its inputs are the
# `Simulator`'s five parameters, whatever model draws them.

# %%
single = functools.partial(iaf.integrate_and_fire_model, num_trials=1)
likelihood = lfi.NeuralLikelihood(single, "x", estimator="maf")
nle_history = lfi.NLE(single, likelihood, seed=0, progress=False, max_epochs=MAX_EPOCHS).train(
    lfi.simulate(single, NLE_SIMULATIONS, seed=1, progress=False)
)
print(f"NLE: trained {nle_history.epochs} epochs in {nle_history.seconds:.1f} s")
chains = lfi.posterior_chains(lfi.surrogate(population_model, likelihood), DRAWS, x=x_o, num_chains=4, seed=0,
                              warmup_steps=WARMUP, kernel_kwargs={"max_tree_depth": TREE_DEPTH})
hierarchy = lfi.from_mcmc(chains)
ess = {name: float(value.min()) for name, value in chains.ess().items()}
print(f"hierarchy: {DRAWS} NUTS draws (4 chains) in {chains.sampling_time:.1f} s, smallest ESS "
      f"{min(ess.values()):.0f} ({min(ess, key=ess.get)})")
posterior = group(hierarchy, "posterior")
for name in VARYING:
    low, high = PRIOR[name].low, PRIOR[name].high
    median = low + (high - low) * torch.sigmoid(torch.as_tensor(posterior[f"{name}_loc"].values))
    true_median = low + (high - low) * torch.sigmoid(torch.tensor(truth_population[f"{name}_loc"]))
    print(f"population median {name}: {float(median.mean()):.2f} ± {float(median.std()):.2f} "
          f"(true {float(true_median):.2f})")

# %% [markdown]
# ## Each neuron on its own: NPE on ten trials
#
# One amortized guide, with a `DeepSet` over the trials, trained on simulations of the
# single-neuron model with 10 trials and applied to each neuron's recording in turn. It knows
# nothing of the other neurons: each posterior has the single-neuron prior's width to start from.

# %%
ten_trials = functools.partial(iaf.integrate_and_fire_model, num_trials=TRIALS)
start = time.perf_counter()
npe_sims = lfi.simulate(ten_trials, NPE_SIMULATIONS, seed=0, progress=False)
torch.manual_seed(0)
guide = lfi.NeuralPosterior(ten_trials, observed="x", embedding_net=DeepSet((TRIALS, len(iaf.FEATURE_NAMES)), 16))
npe_history = lfi.NPE(ten_trials, guide, seed=0, progress=False, max_epochs=MAX_EPOCHS).train(npe_sims)
print(f"NPE: {NPE_SIMULATIONS} simulations and {npe_history.epochs} epochs in {time.perf_counter() - start:.1f} s")
separate = [guide.sample(1000, x=x_o[i]) for i in range(NEURONS)]

# %% [markdown]
# ## Per-neuron estimates: pooled against separate
#
# For $\tau$ and $V_T$ of each neuron: the posterior mean's error against the truth and the
# posterior sd, averaged over the neurons; for the shared parameters, the hierarchy's one
# posterior against the six separate ones.

# %%
rows = {}
for name in VARYING:
    pooled = torch.as_tensor(posterior[name].values).reshape(-1, NEURONS)  # [draws, neurons]
    alone = torch.stack([draws[name] for draws in separate], -1)  # [1000, neurons]
    rows[name] = {
        "hierarchy": ((pooled.mean(0) - truth[name]).abs().mean(), pooled.std(0).mean()),
        "separate NPE": ((alone.mean(0) - truth[name]).abs().mean(), alone.std(0).mean()),
    }
    for method, (error, sd) in rows[name].items():
        print(f"{name}: {method}: mean |error| {float(error):.2f}, mean sd {float(sd):.2f}")
for name in SHARED:
    pooled = torch.as_tensor(posterior[name].values).reshape(-1)
    alone = torch.stack([draws[name] for draws in separate], -1)
    print(f"{name} (true {float(truth[name]):g}): hierarchy {float(pooled.mean()):.2f} ± {float(pooled.std()):.2f}; "
          f"separate NPE sd {float(alone.std(0).mean()):.2f} on average")

fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for ax, name in zip(axes, VARYING):
    pooled = torch.as_tensor(posterior[name].values).reshape(-1, NEURONS)
    alone = torch.stack([draws[name] for draws in separate], -1)
    neurons = torch.arange(NEURONS).float()
    methods = ((-0.15, alone, "each neuron by NPE", "C0"), (0.15, pooled, "hierarchy (NLE + NUTS)", "C1"))
    for offset, draws, label, color in methods:
        low, mid, high = (draws.quantile(q, dim=0) for q in (0.05, 0.5, 0.95))
        ax.errorbar(neurons + offset, mid, yerr=torch.stack([mid - low, high - mid]), fmt="o", color=color,
                    label=label, markersize=3)
    ax.plot(neurons, truth[name], "kx", label="truth")
    ax.set(xlabel="neuron", ylabel=f"{name} ({dict(zip(iaf.PARAMETER_NAMES, iaf.PARAMETER_UNITS))[name]})")
axes[0].legend(fontsize=7)
fig.tight_layout()
fig.savefig(os.path.join(OUT, "many_neurons.png"), dpi=80)
plt.close(fig)

# %% [markdown]
# ## Measured at full budget
#
# `python tutorials/many_neurons.py` on the project's 2-core CPU machine with one torch thread
# (another job on the other core), 2026-11-30: NLE on 20,000 single trials trained in 31 s
# (235 epochs); NUTS on the hierarchy, 4 vectorized chains of 200 draws after 300 warmup
# steps, in 328 s, smallest ESS 25 (Δ_T); NPE on 10,000 simulations of 10 trials in 65 s.
#
# | per-neuron parameter | hierarchy: mean abs. error, mean sd | each neuron by NPE |
# |---|---|---|
# | τ (ms) | 4.51, 2.77 | 1.72, 3.53 |
# | V_T (mV) | 1.57, 1.33 | 0.82, 2.70 |
#
# Population median τ 19.5 ± 2.8 ms (true 14.4), V_T -51.9 ± 1.1 mV (true -50.0); shared
# E_L -66.6 ± 0.8 (true -68), Δ_T 1.9 ± 1.1 (2), sigma 1.90 ± 0.16 (2).
#
# Pooling narrows the posteriors: E_L (0.8 against 2.0 mV on average neuron by neuron), sigma
# (0.16 against 0.35) and every neuron's τ and V_T; Δ_T, which spike features barely inform,
# stays at its prior width either way (1.05 against 1.01). But the hierarchy's τ
# estimates sit 4.5 ms from the truth on average, 1.6 of their sd, while the separate NPE fits
# miss by 1.7 ms. The learned single-trial likelihood scores 60 trials at once here, so a small
# error in it is multiplied sixty-fold in the joint density (in the single-neuron tutorial, at
# 10 trials, it agreed with NPE); and the chains mixed slowly (ESS 25 of 800). Neither is
# resolved yet: a likelihood trained on more simulations or with an NSF, and longer chains, are
# the next things to measure. Treat a hierarchy over many trials of a learned likelihood with
# the same care: check it on simulated neurons with known parameters, as here, before trusting it.
