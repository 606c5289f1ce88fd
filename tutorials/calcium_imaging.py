# %% [markdown]
# # Calcium imaging: spike times from a fluorescence trace, three ways
#
# A two-photon recording does not show spikes; it shows the fluorescence of a calcium
# indicator, which jumps after each spike and decays over hundreds of milliseconds, under
# shot and background noise. Inferring when a neuron fired, and how the indicator behaves, is
# a posterior inference problem (Vogelstein et al. 2010; Pnevmatikakis et al. 2016), and
# Speiser et al. (2017) showed that an *amortized* posterior network, trained once, infers spikes
# for every new trace in milliseconds.
#
# Here the same posterior is computed three ways on one model:
#
# * **NPE** (pyro_lfi): the fluorescence model is a black-box `lfi.Simulator`; the guide learns
#   from simulations alone (forward KL).
# * **Amortized VI** (`lfi.baselines.amortized_vi`): the *same* guide architecture, trained with
#   Pyro's `SVI` and `Trace_ELBO` on the tractable likelihood (reverse KL), as in Speiser et al.
# * **NUTS** (`lfi.baselines.mcmc`): Pyro's Hamiltonian Monte Carlo on the tractable likelihood,
#   the reference.
#
# `lfi.compare` puts them side by side. Run: `python tutorials/calcium_imaging.py`
# (`PYRO_LFI_FAST=1` for the small budget the test suite uses; `PYRO_LFI_OUT=dir` for figures).

# %%
import math
import os
import time

import arviz as az
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pyro
import pyro.distributions as dist
import torch

import pyro_lfi as lfi
from pyro_lfi.baselines import amortized_vi, mcmc

FAST = os.environ.get("PYRO_LFI_FAST") == "1"
OUT = os.environ.get("PYRO_LFI_OUT", ".")
NUM_SIMULATIONS = 1_000 if FAST else 20_000
VI_STEPS = 50 if FAST else 3_000  # at least 50: the final ELBO printed is the mean of the last 50 steps
NUTS_SAMPLES = 20 if FAST else 2_000
CLASSIFIER = "fast" if FAST else "mlp"  # the C2ST classifier of the comparison

# %% [markdown]
# ## The generative model
#
# A 1.2 s recording at 30 frames per second. The neuron fires two spikes, one at
# $t_1 \in [0.1, 0.5]$ s and one at $t_2 \in [0.5, 0.9]$ s. Each spike adds a calcium transient
# with a 50 ms rise and a decay time $\tau$; the indicator converts it with amplitude $A$
# ($\Delta F/F$ per spike):
#
# $$F(t) = A \sum_{k=1}^{2} \bigl(e^{-(t - t_k)/\tau} - e^{-(t - t_k)/\tau_\text{rise}}\bigr)\,
# \mathbb 1[t > t_k] + \sigma\,\varepsilon_t, \qquad \varepsilon_t \sim \mathcal N(0, 1).$$
#
# The priors: $A \sim \text{LogNormal}(0, 0.3)$ and $\tau \sim \text{LogNormal}(\log 0.4\,\text{s},
# 0.3)$, typical of GCaMP6 indicators. The simulator is an ordinary torch function, batched over
# parameter sets; pyro_lfi never looks inside it.

# %%
FRAME_RATE, DURATION, RISE, NOISE = 30.0, 1.2, 0.05, 0.1
FRAMES = torch.arange(int(FRAME_RATE * DURATION)) / FRAME_RATE  # frame times in s


def transient(onset, amplitude, decay):
    """Indicator response to one spike at ``onset``, at every frame: ``batch + (frames,)``."""
    lag = (FRAMES - onset.unsqueeze(-1)).clamp_min(0.0)
    return amplitude.unsqueeze(-1) * (torch.exp(-lag / decay.unsqueeze(-1)) - torch.exp(-lag / RISE))


def mean_fluorescence(t1, t2, amplitude, decay):
    return transient(t1, amplitude, decay) + transient(t2, amplitude, decay)


def fluorescence(t1, t2, amplitude, decay):
    """The simulator: one noisy fluorescence trace per parameter set."""
    mean = mean_fluorescence(t1, t2, amplitude, decay)
    return mean + NOISE * torch.randn(mean.shape)


def model(f=None):
    t1 = pyro.sample("t1", dist.Uniform(0.1, 0.5))
    t2 = pyro.sample("t2", dist.Uniform(0.5, 0.9))
    amplitude = pyro.sample("amplitude", dist.LogNormal(0.0, 0.3))
    decay = pyro.sample("decay", dist.LogNormal(math.log(0.4), 0.3))
    return pyro.sample("f", lfi.Simulator(fluorescence, t1, t2, amplitude, decay), obs=f)


# %% [markdown]
# The noise is Gaussian, so this model has a likelihood, which is what lets NUTS and VI serve as
# baselines. `lfi.baselines` swaps the simulator site for a distribution of the same parameters;
# the model itself is untouched.

# %%
def likelihood(t1, t2, amplitude, decay):
    return dist.Normal(mean_fluorescence(t1, t2, amplitude, decay), NOISE).to_event(1)


LIKELIHOOD = {"f": likelihood}

# %% [markdown]
# ## A recording
# Spikes at 380 ms and 550 ms: close enough that their transients overlap.

# %%
truth = {"t1": 0.38, "t2": 0.55, "amplitude": 1.0, "decay": 0.45}
torch.manual_seed(1)
f_o = fluorescence(*(torch.tensor(v) for v in truth.values()))

# %% [markdown]
# ## NPE: simulate, train, and infer in milliseconds

# %%
sims = lfi.simulate(model, NUM_SIMULATIONS, seed=0, progress=False)
guide = lfi.NeuralPosterior(model, observed="f")
history = lfi.NPE(model, guide, seed=0, progress=False, max_epochs=10 if FAST else 500).train(sims)
start = time.perf_counter()
npe = lfi.to_inference_data(guide, f=f_o, num_samples=1000, seed=0)
print(f"NPE: trained {history.epochs} epochs in {history.seconds:.1f} s; "
      f"1000 posterior draws in {time.perf_counter() - start:.3f} s")

# %% [markdown]
# ## Amortized VI: the same guide, trained on the likelihood
# Every step draws a batch of simulated traces (the same `sims`) and maximizes the ELBO of the
# tractable model at each of them.

# %%
vi_guide = lfi.NeuralPosterior(model, observed="f")
vi = amortized_vi(model, vi_guide, sims, likelihood=LIKELIHOOD, num_steps=VI_STEPS, seed=0)
vi_posterior = vi.to_inference_data(f=f_o, num_samples=1000, seed=0)
print(f"VI: {VI_STEPS} SVI steps in {vi.training_time:.1f} s, final ELBO {-sum(vi.losses[-50:]) / 50:.1f}")

# %% [markdown]
# ## NUTS on the tractable model: the reference

# %%
nuts = mcmc(model, f=f_o, likelihood=LIKELIHOOD, num_samples=NUTS_SAMPLES, seed=0)
print(f"NUTS: {NUTS_SAMPLES} draws in {nuts.posterior.attrs['sampling_time']:.1f} s")

# %% [markdown]
# ## Comparison
# C2ST against NUTS (0.5: indistinguishable), the largest error of a posterior mean and of a
# posterior sd, in NUTS standard deviations, the smallest effective sample size, wall time.

# %%
comparison = lfi.compare(
    {"NUTS": nuts, "NPE": npe, "VI": vi_posterior}, reference="NUTS",
    wall_time={"NPE": history.seconds}, classifier=CLASSIFIER,
)
print(comparison.table.round(3).to_string())
comparison.plot_pair()
plt.savefig(os.path.join(OUT, "calcium_pair.png"), dpi=80)
plt.close("all")

# %% [markdown]
# ## The trace and what each method sees in it
# Posterior-predictive mean traces at 200 NPE draws, over the recording.

# %%
draws = guide.sample(200, f=f_o)
predicted = mean_fluorescence(draws["t1"], draws["t2"], draws["amplitude"], draws["decay"])
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(FRAMES, predicted.T, color="C0", alpha=0.05)
ax.plot(FRAMES, f_o, "k.", label="recording")
for k in ("t1", "t2"):
    ax.axvline(truth[k], color="C3", linestyle="--", linewidth=1)
ax.set_xlabel("time (s)")
ax.set_ylabel(r"$\Delta F / F$")
ax.legend(loc="upper right")
fig.tight_layout()
fig.savefig(os.path.join(OUT, "calcium_trace.png"), dpi=80)
plt.close(fig)

# %% [markdown]
# ## Amortization: the next recording costs nothing
# NPE and VI answer for a new trace with a forward pass; NUTS starts over.

# %%
torch.manual_seed(2)
f_new = fluorescence(torch.tensor(0.2), torch.tensor(0.8), torch.tensor(1.3), torch.tensor(0.3))
start = time.perf_counter()
new = guide.sample(1000, f=f_new)
print(f"new recording: 1000 NPE draws in {time.perf_counter() - start:.3f} s; "
      f"spike times {new['t1'].mean():.3f} s and {new['t2'].mean():.3f} s (true 0.200, 0.800)")
print(az.summary(npe, kind="stats").round(3).to_string())

# %% [markdown]
# ## Measured at full budget
#
# `python tutorials/calcium_imaging.py` (20,000 simulations, 3,000 SVI steps, 2,000 NUTS draws)
# on the project's 2-core CPU machine, 2026-11-22, 8.1 min in all:
#
# | method | C2ST vs NUTS | largest mean error (NUTS sd) | largest sd error | ESS | wall time |
# |---|---|---|---|---|---|
# | NUTS | - | - | - | 651 of 2,000 | 180 s |
# | NPE | 0.665 | 0.50 | 0.27 | 897 of 1,000 | 106 s (101 epochs) |
# | amortized VI | 0.609 | 0.48 | 0.14 | 916 of 1,000 | 158 s |
#
# NUTS is the right answer here: importance sampling of the same posterior with 2·10^6 draws
# (effective sample size 15,700) gives means t1 = 0.3740 s, t2 = 0.5523 s, amplitude 0.965,
# decay 0.502 s and sds 0.0076, 0.0083, 0.059, 0.046, which NUTS matches. The two amortized
# guides agree with each other more than with NUTS: both put the spikes 2-3 ms (0.3-0.4 posterior
# sd) early. Both are right in scale and shape (sd errors of 0.14-0.27 NUTS sd, the
# amplitude-decay correlation reproduced); a C2ST of 0.61-0.67 (0.5: indistinguishable) is the
# price of a guide that serves every trace of the prior, where each spike time is known to 2% of
# its prior range. Inference for a
# new trace takes 17 ms for 1,000 draws and found spikes at 0.205 s and 0.803 s (true 0.200 and
# 0.800); NUTS would start over. Sequential NPE (`lfi.SNPE`) at one trace closes the gap when that
# one trace is all that matters.
