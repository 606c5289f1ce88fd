# %% [markdown]
# # Hodgkin-Huxley, 8 parameters
#
# The classic benchmark of simulation-based inference in neuroscience (Gonçalves et al. 2020,
# *eLife* 9:e56261): a single-compartment neuron with sodium, potassium, slow M-type potassium and
# leak currents, kinetics of Pospischil et al. (2008), driven by a current step and by noise. The
# simulator is an ODE integrated over 12,000 steps with additive noise: its likelihood is
# intractable, so the posterior over its 8 parameters is learned from simulations alone.
#
# This tutorial fits one synthetic recording three ways with pyro_lfi:
#
# 1. **amortized NPE** on 7 hand-crafted summary statistics (`lfi.NPE`), which serves every
#    recording once trained,
# 2. **sequential APT** (`lfi.SNPE(..., method="apt")`), which spends its simulations near this
#    one recording,
#
# and checks the amortized guide with **simulation-based calibration** (`lfi.diagnostics.sbc`).
#
# Run: `python tutorials/hodgkin_huxley.py` (`PYRO_LFI_FAST=1` for the small budget the test
# suite uses; `PYRO_LFI_OUT=dir` for figures). The full budget uses the compiled simulator
# (`torch.compile`, about a minute to compile on a fresh machine); the fast budget runs the
# same integrator uncompiled (`backend="eager"`), whose cost is the Python loop over the time
# steps, almost independent of the batch size: about 10 s per call on one CPU thread at the
# protocol's dt = 0.01 ms (12,000 steps). The fast mode keeps the 120 ms protocol but steps it
# at dt = 0.025 ms (4,800 steps, about 3 s a call; the integrator's exponential-Euler steps stay
# stable there, and the recording's statistics barely move), shrinks the budgets, and makes six
# simulator calls, so it takes under a minute.

# %%
import functools
import os
import time

import arviz as az
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import pyro_lfi as lfi
from pyro_lfi.models.hodgkin_huxley import (
    DEFAULT_PROTOCOL,
    PARAMETER_NAMES,
    PRIOR_BOUNDS,
    SUMMARY_NAMES,
    Protocol,
    hodgkin_huxley_model,
    simulate,
    summary_statistics,
)

FAST = os.environ.get("PYRO_LFI_FAST") == "1"
OUT = os.environ.get("PYRO_LFI_OUT", ".")
BACKEND = "eager" if FAST else "auto"  # "auto": compiled with torch.compile, eager if that fails
PROTOCOL = Protocol(dt=0.025) if FAST else DEFAULT_PROTOCOL  # fast: NEURON's default step, 2.5x fewer steps
NUM_SIMULATIONS = 2_000 if FAST else 50_000  # amortized training set
ROUNDS, PER_ROUND = (1, 300) if FAST else (4, 4_000)  # sequential APT: rounds after the first (prior) one
SBC_SIMULATIONS = 50 if FAST else 1_000
MAX_EPOCHS = 5 if FAST else 200  # per training run (each APT round is one)
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))

# %% [markdown]
# ## The model
#
# The membrane potential $V$ (mV) of a point neuron with capacitance $C = 1\,\mu F/cm^2$ obeys
#
# $$C \frac{dV}{dt} = \bar g_{Na} m^3 h (E_{Na} - V) + \bar g_K n^4 (E_K - V)
#   + \bar g_M p (E_K - V) + g_{leak} (E_{leak} - V) + I(t) + \sigma \xi(t),$$
#
# with gates $x \in \{m, h, n\}$ relaxing as $\dot x = \alpha_x(V - V_T)(1 - x) - \beta_x(V - V_T)
# x$ (Pospischil et al. 2008) and the slow M-current gate $\dot p = (p_\infty(V) - p) /
# \tau_p(V)$, $\tau_p \propto \tau_{max}$. $I(t)$ is a 0.5 nA step from 10 to 110 ms of a
# 120 ms recording (dt = 0.01 ms), $\xi$ white noise. The 8 parameters and their uniform priors
# (Gonçalves et al. 2020):
#
# | parameter | meaning | prior |
# |---|---|---|
# | $\bar g_{Na}$ | maximal sodium conductance (mS/cm²) | U(0.5, 80) |
# | $\bar g_K$ | maximal delayed-rectifier potassium conductance | U(1e-4, 15) |
# | $g_{leak}$ | leak conductance | U(1e-4, 0.6) |
# | $\bar g_M$ | maximal M-type (slow, adapting) potassium conductance | U(1e-4, 0.6) |
# | $\tau_{max}$ | time scale of the M-current (ms) | U(50, 3000) |
# | $V_T$ | threshold shift of the Na/K kinetics (mV) | U(-90, -40) |
# | $\sigma$ | noise amplitude | U(1e-4, 0.15) |
# | $E_{leak}$ | leak reversal potential (mV) | U(-100, -35) |
#
# The data are 7 summary statistics of the trace $V_0, \dots, V_K$ (sbi's tutorial, after
# Gonçalves et al.): the spike count (upward crossings of -10 mV during the stimulus), the
# resting potential $\bar V_{rest}$ (mean before the stimulus) and its standard deviation, and
# the first four moments of $V$ during the stimulus window $S$,
#
# $$\mu = \frac{1}{|S|}\sum_{k \in S} V_k, \quad s^2 = \frac{1}{|S|}\sum_{k \in S} (V_k - \mu)^2,
# \quad \text{skew} = \frac{1}{|S|}\sum_{k \in S} \Bigl(\frac{V_k - \mu}{s}\Bigr)^3, \quad
# \text{kurt} = \frac{1}{|S|}\sum_{k \in S} \Bigl(\frac{V_k - \mu}{s}\Bigr)^4.$$
#
# `pyro_lfi.models.hodgkin_huxley_model` is the Pyro model: `theta ~ Uniform(low, high)` (8-vector)
# and `x ~ lfi.Simulator(...)`, the statistics computed on the fly from the full-resolution trace.

# %%
model = functools.partial(hodgkin_huxley_model, backend=BACKEND, protocol=PROTOCOL)
print("parameters:", ", ".join(PARAMETER_NAMES))
print("statistics:", ", ".join(SUMMARY_NAMES))

# %% [markdown]
# ## A recording
#
# The ground truth, `truth` below, is a parameter set inside the prior chosen to fire regularly:
# 5 action potentials during the 100 ms current step, from a resting potential near -70 mV. We
# simulate its full trace once and take the statistics of it.

# %%
truth = {"g_Na": 50.0, "g_K": 5.0, "g_leak": 0.1, "g_M": 0.07, "tau_max": 600.0, "V_T": -60.0,
         "sigma": 0.1, "E_leak": -70.0}
theta_o = torch.tensor(list(truth.values()))
torch.manual_seed(1)
trace_o = simulate(theta_o, output="trace", backend=BACKEND, protocol=PROTOCOL)  # every dt: [12001] at 0.01 ms
x_o = summary_statistics(trace_o, PROTOCOL)
TIME = torch.arange(PROTOCOL.num_samples) * PROTOCOL.dt
print("observed statistics:", {name: round(float(v), 2) for name, v in zip(SUMMARY_NAMES, x_o)})

# %% [markdown]
# ## Amortized NPE
#
# Simulate from the prior, train a neural spline flow $q(\theta \mid x)$ on the pairs, evaluate it
# at $x_o$. The statistics and parameters are standardized by the guide; the flow lives on the
# unconstrained (logit) scale of the box prior, so every draw is inside the prior's support.

# %%
sims = lfi.simulate(model, NUM_SIMULATIONS, seed=0, progress=False)
print(f"simulations: {sims.num_valid} valid of {len(sims)}")
guide = lfi.NeuralPosterior(model, observed="x")
history = lfi.NPE(model, guide, seed=0, progress=False, max_epochs=MAX_EPOCHS).train(sims)
print(f"NPE: trained {history.epochs} epochs in {history.seconds:.1f} s")
coords = {"parameter": list(PARAMETER_NAMES)}
dims = {"theta": ["parameter"]}
amortized = lfi.to_inference_data(guide, x=x_o, num_samples=2000, seed=0, coords=coords, dims=dims)

# %% [markdown]
# ## Sequential APT at this recording
#
# APT (Greenberg et al. 2019, "SNPE-C") starts from the prior, and each round proposes new
# parameters from the current posterior estimate at $x_o$, simulates them and retrains on every
# round so far with the atomic loss, which corrects for the proposal. Its first round is prior
# simulations; the later ones are proposed at $x_o$.

# %%
apt_guide = lfi.NeuralPosterior(model, observed="x")
snpe = lfi.SNPE(model, apt_guide, method="apt", progress=False, max_epochs=MAX_EPOCHS)
start = time.perf_counter()
snpe.run(x=x_o, num_rounds=ROUNDS + 1, simulations_per_round=PER_ROUND, seed=0)
print(f"APT: {ROUNDS + 1} rounds of {PER_ROUND} simulations in {time.perf_counter() - start:.1f} s")
sequential = lfi.to_inference_data(apt_guide, x=x_o, num_samples=2000, seed=0, coords=coords, dims=dims)

for label, idata in (("NPE", amortized), ("APT", sequential)):
    post = idata.posterior["theta"]
    mean, sd = post.mean(("chain", "draw")).values, post.std(("chain", "draw")).values
    width = sd / np.array([(hi - lo) / 12**0.5 for lo, hi in PRIOR_BOUNDS.values()])
    print(f"{label} posterior mean:", {n: round(float(m), 3) for n, m in zip(PARAMETER_NAMES, mean)})
    print(f"{label} posterior sd / prior sd:", {n: round(float(w), 2) for n, w in zip(PARAMETER_NAMES, width)})

# %% [markdown]
# ## The posterior
#
# Pair plot of the APT posterior, ground truth marked. Parameters that the 7 statistics barely
# inform - e.g. the M-current's $\tau_{max}$: the adaptation it controls is weak over 100 ms and
# the statistics do not measure it directly - stay close to the prior.
# With the fast budget (`PYRO_LFI_FAST=1`: 2,000 simulations at dt = 0.025 ms, 5 epochs, two APT
# rounds of 300) the posterior is still wide - only $V_T$, $E_{leak}$ and $g_{leak}$ are clearly
# narrower than the prior - and some draws do not spike at all; the full budget is what makes it sharp.

# %%
if lfi.arviz_compat.ARVIZ_1:  # arviz-plots: scatter and marginal densities (ground truth: `truth`)
    with az.rc_context({"plot.max_subplots": 64}):  # 8 x 8 panels
        az.plot_pair(sequential, var_names=["theta"], visuals={"scatter": {"alpha": 0.3}}, backend="matplotlib")
    plt.gcf().suptitle("APT posterior at the synthetic recording")
else:
    axes = az.plot_pair(
        sequential, var_names=["theta"], kind="scatter" if FAST else "kde", marginals=True, textsize=9,
        figsize=(12, 12), scatter_kwargs={"alpha": 0.3, "s": 3},
    )
    values = list(truth.values())
    for i in range(len(values)):  # mark the ground truth: vertical lines on the marginals, stars elsewhere
        axes[i, i].axvline(values[i], color="black")
        for j in range(i + 1, len(values)):
            axes[j, i].plot(values[i], values[j], marker="*", color="black", markersize=10)
    plt.gcf().suptitle("APT posterior at the synthetic recording (ground truth in black)")
plt.savefig(os.path.join(OUT, "hh_pair.png"), dpi=80)
plt.close("all")

# %% [markdown]
# ## Posterior predictive traces
#
# The statistics summarize; the voltage shows whether the fit makes sense. Simulate full traces
# at a few APT posterior draws and overlay them on the observed trace. The spike times differ
# (the noise differs), the firing rate, spike shape and resting potential should not.

# %%
draws = torch.as_tensor(sequential.posterior["theta"].values.reshape(-1, 8)[:4], dtype=torch.float32)
torch.manual_seed(2)
predicted = simulate(draws, output="trace", subsample=10, backend=BACKEND, protocol=PROTOCOL)
fig, axes = plt.subplots(len(draws) + 1, 1, figsize=(9, 1.6 * (len(draws) + 1)), sharex=True, sharey=True)
axes[0].plot(TIME, trace_o, color="black", lw=0.8)
axes[0].set_title("observed", fontsize=9)
for ax, v in zip(axes[1:], predicted):
    ax.plot(TIME[::10], v, color="C0", lw=0.8)
    ax.set_title("posterior draw", fontsize=9)
for ax in axes:
    ax.set_ylabel("V (mV)")
axes[-1].set_xlabel("time (ms)")
fig.tight_layout()
fig.savefig(os.path.join(OUT, "hh_traces.png"), dpi=80)
plt.close(fig)

# %% [markdown]
# ## Calibration of the amortized guide
#
# SBC (Talts et al. 2018): for prior draws $\theta_i$ and simulations $x_i$, the rank of
# $\theta_i$ among posterior draws at $x_i$ is uniform if the guide is calibrated on average over
# the prior. One rank histogram (ECDF difference) per parameter; the Kolmogorov-Smirnov p-values
# are Bonferroni-corrected in `passed()`.

# %%
result = lfi.diagnostics.sbc(guide, model, num_simulations=SBC_SIMULATIONS, num_posterior_samples=100, seed=1)
print("SBC p-values:", {n: round(float(p), 3) for n, p in zip(PARAMETER_NAMES, np.ravel(result.pvalues["theta"]))})
print(f"SBC passed: {result.passed()}")
result.plot()
plt.savefig(os.path.join(OUT, "hh_sbc.png"), dpi=80)
plt.close("all")

# %% [markdown]
# ## Measured at full budget
#
# `python tutorials/hodgkin_huxley.py` on the project's 2-core CPU machine (2 torch threads,
# nothing else running), 2026-11-22: 37.8 min in all. The 50,000 prior simulations were all
# valid; NPE trained 200 epochs (the cap) in 606 s; APT's 5 rounds of 4,000 simulations took
# 1,614 s, simulations included.
#
# Posterior sd / prior sd at the recording, amortized NPE -> APT:
#
# | | g_Na | g_K | g_leak | g_M | tau_max | V_T | sigma | E_leak |
# |---|---|---|---|---|---|---|---|---|
# | NPE | 0.67 | 0.42 | 0.37 | 0.65 | 0.92 | 0.20 | 1.00 | 0.39 |
# | APT | 0.39 | 0.21 | 0.23 | 0.64 | 1.11 | 0.09 | 1.01 | 0.24 |
#
# With fewer simulations (20,000 against 50,000) APT's posterior is about half as wide on the five parameters the
# statistics inform, and its means sit on the truth: g_Na 50.6 (true 50), g_K 5.07 (5), g_leak
# 0.096 (0.1), V_T -60.3 (-60), E_leak -67.2 (-70); NPE's are further off (g_Na 58.4,
# E_leak -63.5). g_M, tau_max and sigma stay at the width of the prior: the 7 statistics do not
# measure adaptation, and noise of sigma <= 0.15 barely moves the resting potential (its std is
# 0.02 mV here). The pair plot also shows a small second mode at the top of the g_Na range with
# larger g_K and g_leak, another balance of conductances that gives the same statistics. All
# four posterior-predictive traces fire 5 spikes with the recording's shape and resting
# potential. SBC of the amortized guide over 1,000 prior simulations passes: the smallest of the
# 8 Kolmogorov-Smirnov p-values are E_leak 0.019 and g_M 0.044 (`passed()` tests at level 0.01,
# Bonferroni-corrected: every p-value above 0.01/8).
