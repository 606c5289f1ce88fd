# %% [markdown]
# # Spike trains of an exponential integrate-and-fire neuron: NPE over trials, and a learned likelihood
#
# The exponential integrate-and-fire (EIF) neuron (Fourcaud-Trocmé et al. 2003) is the leaky
# integrate-and-fire neuron with a spike-initiation current that grows exponentially above a
# soft threshold:
#
# $$\tau \frac{dV}{dt} = E_L - V + \Delta_T\, e^{(V - V_T)/\Delta_T} + \mu(t) + \sigma\sqrt{2\tau}\,\xi(t),$$
#
# in mV and ms (`pyro_lfi.models.integrate_and_fire` documents the units and the reset). An
# experimenter injects a current step and records only *spike times*, over several repeated
# trials; the noise makes every trial different. We infer the membrane time constant
# $\tau$, the resting potential $E_L$, the slope factor $\Delta_T$, the soft threshold $V_T$
# and the noise $\sigma$ from 3 and from 10 trials, two ways, each of which serves any number
# of trials without retraining:
#
# * **NPE** with a `DeepSet` embedding (`pyro_lfi.nn.DeepSet`): the guide reads the set of
#   trials, invariant to their order, with missing trials masked out. It is trained on
#   simulations of 1 to 10 trials (`iaf.variable_trials_model`, the absent ones NaN), so one
#   amortized guide answers for 3 trials as well as for 10.
# * **A learned single-trial likelihood** (`lfi.NeuralLikelihood`, trained by `lfi.NLE` on
#   single-trial simulations), put back into the model by `lfi.surrogate`, where
#   `pyro.plate("trials", n)` multiplies it over the trials, and sampled by `lfi.sample_posterior`
#   (NUTS chains started at importance-resampled prior draws).
#
# and check NPE's calibration with simulation-based calibration (SBC). Run:
# `python tutorials/integrate_and_fire.py` (`PYRO_LFI_FAST=1` for the small budget the test
# suite uses; `PYRO_LFI_OUT=dir` for figures).

# %%
import functools
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import pyro_lfi as lfi
from pyro_lfi.models import integrate_and_fire as iaf
from pyro_lfi.nn import DeepSet

FAST = os.environ.get("PYRO_LFI_FAST") == "1"
OUT = os.environ.get("PYRO_LFI_OUT", ".")
MAX_TRIALS = 10
TRIAL_COUNTS = (3, MAX_TRIALS)
NPE_SIMULATIONS = 500 if FAST else 10_000  # each of 1 to 10 trials
NLE_SIMULATIONS = 1_000 if FAST else 20_000  # single trials
MAX_EPOCHS = 10 if FAST else 300
CHAINS = 2 if FAST else 4
NUTS_SAMPLES = 20 if FAST else 800  # all chains together
WARMUP = 10 if FAST else 200  # warmup steps of each chain
TREE_DEPTH = 3 if FAST else 6  # NUTS's max_tree_depth: at most 2^depth - 1 network evaluations per draw
SBC_SIMULATIONS = 30 if FAST else 300
CLASSIFIER = "fast" if FAST else "mlp"
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))

# %% [markdown]
# ## A recording: 10 trials of a 25 mV step
#
# The protocol (`iaf.DEFAULT_PROTOCOL`): 300 ms at dt = 0.1 ms, the step from 50 ms on. Each
# trial is summarized by its spike count, first-spike latency, and the mean and coefficient of
# variation of its inter-spike intervals during the step (`iaf.FEATURE_NAMES`). We analyse the
# first 3 trials, then all 10.

# %%
protocol = iaf.DEFAULT_PROTOCOL
truth = {"tau": 15.0, "e_leak": -68.0, "delta_t": 2.0, "v_t": -50.0, "sigma": 2.0}
torch.manual_seed(3)
raster = iaf.simulate(torch.tensor([list(truth.values())]).expand(MAX_TRIALS, 5), protocol=protocol)
x_o = iaf.observation(iaf.spike_features(raster, protocol), protocol)
print("observed features (trial means):", dict(zip(iaf.FEATURE_NAMES, x_o.mean(0).round(decimals=2).tolist())))

fig, ax = plt.subplots(figsize=(7, 2.6))
for trial, spikes in enumerate(raster):
    ax.vlines(protocol.times[spikes], trial + 0.6, trial + 1.4, color="k", linewidth=1)
ax.axvspan(protocol.t_on, protocol.t_off, color="C1", alpha=0.1, label="current step")
ax.set(xlabel="time (ms)", ylabel="trial", xlim=(0, protocol.duration))
ax.legend(loc="upper left")
fig.tight_layout()
fig.savefig(os.path.join(OUT, "if_raster.png"), dpi=80)
plt.close(fig)

# %% [markdown]
# ## NPE with a DeepSet over a variable number of trials
#
# `iaf.variable_trials_model` simulates 10 trials per parameter set and keeps the first $n$,
# $n$ uniform on 1..10, the rest NaN. The number kept does not depend on the parameters, so
# the posterior given those $n$ trials is the posterior of the $n$-trial model. The guide
# imputes the missing entries and flags them (`missing="impute"`); the DeepSet drops the
# flagged trials from its mean and gives its head $\log(1 + n)$, which sets the width.

# %%
model = functools.partial(iaf.variable_trials_model, max_trials=MAX_TRIALS)
start = time.perf_counter()
sims = lfi.simulate(model, NPE_SIMULATIONS, seed=0, progress=False)
print(f"{NPE_SIMULATIONS} simulations of 1-{MAX_TRIALS} trials in {time.perf_counter() - start:.1f} s")
torch.manual_seed(0)
deepset = DeepSet((MAX_TRIALS, 4), 16, missing_indicator=True)
guide = lfi.NeuralPosterior(model, observed="x", missing="impute", embedding_net=deepset)
history = lfi.NPE(model, guide, seed=0, progress=False, max_epochs=MAX_EPOCHS).train(sims)
print(f"NPE: trained {history.epochs} epochs in {history.seconds:.1f} s")
npe = {n: lfi.to_inference_data(guide, x=iaf.pad_trials(x_o[:n], MAX_TRIALS), num_samples=1000, seed=0)
       for n in TRIAL_COUNTS}

# %% [markdown]
# ## A learned single-trial likelihood, sampled over any number of trials
#
# `NeuralLikelihood` learns $q(x_i \mid \theta)$ for one trial from single-trial simulations;
# `lfi.surrogate` scores the model's data site with it, and the trials plate multiplies it
# over the trials, so the same network serves 3 trials or 10. `lfi.posterior_chains` starts
# each NUTS chain at a prior draw resampled by its likelihood, so no chain starts stranded in
# the prior's tails (`lfi.sample_posterior` gives the pooled draws alone).

# %%
single = functools.partial(iaf.integrate_and_fire_model, num_trials=1)
likelihood = lfi.NeuralLikelihood(single, "x", estimator="maf")
nle_history = lfi.NLE(single, likelihood, seed=0, progress=False, max_epochs=MAX_EPOCHS).train(
    lfi.simulate(single, NLE_SIMULATIONS, seed=1, progress=False)
)
print(f"NLE: trained {nle_history.epochs} epochs in {nle_history.seconds:.1f} s")
nle = {}
for n in TRIAL_COUNTS:
    trials_model = lfi.surrogate(functools.partial(iaf.integrate_and_fire_model, num_trials=n), likelihood)
    chains = lfi.posterior_chains(trials_model, NUTS_SAMPLES, x=x_o[:n], num_chains=CHAINS, seed=0,
                                  warmup_steps=WARMUP, kernel_kwargs={"max_tree_depth": TREE_DEPTH})
    ess = min(float(value.sum()) for value in chains.ess().values())
    nle[n] = lfi.from_mcmc(chains)
    sds = ", ".join(f"{k} {float(nle[n].posterior[k].std()):.2f}" for k in truth)
    print(f"NLE + NUTS, {n} trials: {NUTS_SAMPLES} draws ({CHAINS} chains) in {chains.sampling_time:.1f} s, "
          f"smallest ESS {ess:.0f}; posterior sd {sds}")
    assert ess > 0 and all(float(nle[n].posterior[k].std()) > 0 for k in truth), "the chains did not move"

# %% [markdown]
# ## The posteriors at 3 and at 10 trials
# Neither is exact here: the C2ST between them measures their agreement, not their accuracy.
# More trials narrow both.

# %%
comparisons = {}
for n in TRIAL_COUNTS:
    comparisons[n] = lfi.compare({"NLE+NUTS": nle[n], "NPE": npe[n]}, reference="NLE+NUTS",
                                 wall_time={"NPE": history.seconds}, classifier=CLASSIFIER)
    print(f"{n} trials: c2st(NPE, NLE+NUTS) = {comparisons[n].table.loc['NPE', 'c2st']:.3f}")
for k, v in truth.items():
    print(f"{k}: true {v:g}; " + "; ".join(
        f"{n} trials NPE {float(npe[n].posterior[k].mean()):.2f} ± {float(npe[n].posterior[k].std()):.2f}, "
        f"NLE {float(nle[n].posterior[k].mean()):.2f} ± {float(nle[n].posterior[k].std()):.2f}" for n in TRIAL_COUNTS))
comparisons[MAX_TRIALS].plot_pair()
plt.savefig(os.path.join(OUT, "if_pair.png"), dpi=50)
plt.close("all")

fig, axes = plt.subplots(1, 5, figsize=(11, 2.3))
for ax, k in zip(axes, truth):
    for n, style in zip(TRIAL_COUNTS, (":", "-")):
        for name, result, color in (("NPE", npe[n], "C0"), ("NLE+NUTS", nle[n], "C1")):
            ax.hist(np.ravel(result.posterior[k].values), bins=30, density=True, histtype="step", linestyle=style,
                    color=color, label=f"{name}, {n} trials")
    ax.axvline(truth[k], color="k", linewidth=1)
    ax.set(xlabel=f"{k} ({dict(zip(iaf.PARAMETER_NAMES, iaf.PARAMETER_UNITS))[k]})", yticks=[])
axes[0].legend(fontsize=6)
fig.tight_layout()
fig.savefig(os.path.join(OUT, "if_trials.png"), dpi=70)
plt.close(fig)

# %% [markdown]
# ## Simulation-based calibration of the NPE guide
# For prior draws and their simulated 10 trials, the rank of each true parameter among the
# guide's draws is uniform if the guide is calibrated (Talts et al. 2018).

# %%
ten_trials = functools.partial(iaf.integrate_and_fire_model, num_trials=MAX_TRIALS)
result = lfi.diagnostics.sbc(guide, ten_trials, num_simulations=SBC_SIMULATIONS, num_posterior_samples=100, seed=1)
print("SBC p-values:", {k: round(float(np.ravel(result.pvalues[k])[0]), 3) for k in truth})
print(f"SBC passed: {result.passed()}")
result.plot()
plt.savefig(os.path.join(OUT, "if_sbc.png"), dpi=60)
plt.close("all")

# %% [markdown]
# ## Measured at full budget
#
# `python tutorials/integrate_and_fire.py` on the project's 2-core CPU machine with one torch
# thread, 2026-11-30, 32 min wall time for 15 min of CPU time (other jobs shared the two cores;
# NUTS on the learned likelihood is most of it):
#
# * 10,000 simulations of 1 to 10 trials (100,000 trials of 3,000 Euler steps) in 52 s; NPE
#   with the masking DeepSet trained in 117 s (118 epochs). NLE on 20,000 single trials trained
#   in 97 s (235 epochs); `lfi.posterior_chains`, 4 chains of 200 draws after 200 warmup steps
#   each, in 824 s (3 trials) and 791 s (10 trials), smallest ESS 244 and 277 of 800 (chains
#   one after another, as `posterior_chains` ran them then; they are vectorized by default now,
#   which gave 3 times the ESS per second on SLCP's learned likelihood; not re-measured here).
# * Posterior sd at 3 → 10 trials (truth τ 15 ms, E_L -68, Δ_T 2, V_T -50, sigma 2 mV):
#
#   | | τ | E_L | Δ_T | V_T | sigma |
#   |---|---|---|---|---|---|
#   | NPE, one guide | 4.55 → 4.12 | 2.89 → 2.63 | 0.98 → 0.99 | 2.83 → 2.78 | 0.49 → 0.50 |
#   | NLE + NUTS | 3.43 → 2.40 | 2.25 → 2.16 | 0.88 → 0.82 | 2.25 → 2.22 | 0.45 → 0.34 |
#
#   Both cover the truth at both counts (NPE at 10 trials τ 17.0, E_L -67.0, Δ_T 2.24,
#   V_T -49.9, sigma 2.41). C2ST of NPE against NLE + NUTS 0.794 (3 trials) and 0.773 (10 trials).
# * More trials narrow the NLE posterior mainly in τ and sigma (30% and 24%); Δ_T and V_T stay
#   near their prior widths at both counts: spike counts, latencies and ISIs do not separate
#   them. The amortized NPE guide narrows τ and E_L by about 10% only and is up to 1.7 times
#   wider than NLE at 10 trials: trained over 1 to 10 trials, it sees each trial count in only
#   a tenth of its simulations (a guide trained at exactly 10 trials reached C2ST 0.708 against
#   NLE in the previous version of this tutorial). More simulations, or sequential NPE at one
#   recording, would close this gap (not measured here).
# * SBC of the NPE guide on 300 prior simulations of 10 trials passes (smallest KS p-value
#   0.057, E_L).
#
# Neither method is exact here; the exact check of the simulator is the leaky limit's firing
# rate against its closed form (tests/test_integrate_and_fire.py).
