# %% [markdown]
# # A V1 receptive field from white noise: NPE on the STA against NUTS on the raw spikes
#
# A classic experiment in visual neuroscience shows a neuron a sequence of white-noise images
# and averages the images that preceded its spikes: the spike-triggered average (STA) is a
# noisy picture of the neuron's receptive field. Lueckmann et al. (2017) and Gonçalves et al.
# (2020) used this setting to test simulation-based inference: a model simple cell whose
# receptive field is a Gabor (position, orientation, spatial frequency, phase, size, gain), in
# a linear-nonlinear-Bernoulli model, observed through its STA and spike count.
#
# This model is a generalized linear model, so its likelihood is tractable and NUTS on the raw
# spike train gives the exact posterior. Better still, the STA and spike count are a
# *sufficient* statistic (see `pyro_lfi.models.receptive_field`): NPE on them targets exactly
# the posterior NUTS samples from the spikes. We compare the two with `lfi.compare` at a short
# and a long recording.
#
# Run: `python tutorials/receptive_field.py` (`PYRO_LFI_FAST=1` for the small budget the test
# suite uses; `PYRO_LFI_OUT=dir` for figures).

# %%
import functools
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import pyro_lfi as lfi
from pyro_lfi.baselines import mcmc
from pyro_lfi.models import receptive_field as rf

FAST = os.environ.get("PYRO_LFI_FAST") == "1"
OUT = os.environ.get("PYRO_LFI_OUT", ".")
LENGTHS = {"short": 400, "long": 4000}  # frames of white noise
NUM_SIMULATIONS = 1_000 if FAST else 10_000
MAX_EPOCHS = 10 if FAST else 300
NUTS_SAMPLES = 60 if FAST else 1_000
CLASSIFIER = "fast" if FAST else "mlp"
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))

# %% [markdown]
# ## The model and a recording
#
# 9 x 9 pixel images; a receptive field a little off centre, oriented at 69°, about 0.15 cycles
# per pixel, with a bias that gives one spike every eight frames or so. The model takes the
# (fixed, known) images as an argument; `output="summary"` observes the STA and the spike count
# (82 numbers), `output="spikes"` the raw spike train, for the exact likelihood.

# %%
truth = {"x0": 0.5, "y0": -0.5, "orientation": 1.2, "frequency": 0.15, "phase": 2.5, "size": 1.6, "gain": 0.8,
         "bias": -2.0}
true_field = rf.gabor(*(torch.tensor(truth[k]) for k in rf.PARAMETER_NAMES[:-1]), image_size=9)
recordings = {}
for name, frames in LENGTHS.items():
    images = rf.white_noise(frames, seed=0)
    torch.manual_seed(1)
    spikes = rf.receptive_field_simulator(*(torch.tensor([v]) for v in truth.values()), images=images,
                                          output="spikes")[0]
    recordings[name] = images, spikes
    print(f"{name} recording: {frames} frames, {int(spikes.sum())} spikes")

# %% [markdown]
# ## NPE and NUTS at each recording length
#
# NPE trains one amortized guide per recording length (the STA's noise depends on it) on
# simulations of the black-box model; NUTS samples the tractable model, in which
# `receptive_field_likelihood` replaces the simulator site by the GLM's Bernoulli likelihood of
# the spike train.

# %%
comparisons, guides = {}, {}
for name, (images, spikes) in recordings.items():
    model = functools.partial(rf.receptive_field_model, images=images)
    sims = lfi.simulate(model, NUM_SIMULATIONS, seed=0, progress=False)
    guide = lfi.NeuralPosterior(model, observed="x")
    history = lfi.NPE(model, guide, seed=0, progress=False, max_epochs=MAX_EPOCHS).train(sims)
    x_o = rf.spike_triggered_average(spikes, images)
    npe = lfi.to_inference_data(guide, x=x_o, num_samples=1000, seed=0)
    nuts = mcmc(model, x=spikes, output="spikes", likelihood=rf.receptive_field_likelihood(images),
                num_samples=NUTS_SAMPLES, seed=0)
    print(f"{name}: NPE trained {history.epochs} epochs in {history.seconds:.1f} s; "
          f"NUTS {NUTS_SAMPLES} draws in {nuts.posterior.attrs['sampling_time']:.1f} s")
    comparisons[name] = lfi.compare({"NUTS": nuts, "NPE": npe}, reference="NUTS",
                                    wall_time={"NPE": history.seconds}, classifier=CLASSIFIER)
    guides[name] = guide, x_o
    print(comparisons[name].table.round(3).to_string())
    print(f"{name}: c2st(NPE, NUTS) = {comparisons[name].table.loc['NPE', 'c2st']:.3f}")

# %%
comparisons["long"].plot_pair()
plt.savefig(os.path.join(OUT, "rf_pair.png"), dpi=60)
plt.close("all")

# %% [markdown]
# ## The receptive field, the STA, and receptive fields drawn from the posterior
#
# Top: the ground truth and the STA of each recording. Bottom: receptive fields at four
# draws of the NPE posterior given the long recording.

# %%
fig, axes = plt.subplots(2, 4, figsize=(8, 4.4))
panels = [("ground truth", true_field)] + [
    (f"STA, {name} ({LENGTHS[name]} frames)", guides[name][1][:-1].reshape(9, 9)) for name in LENGTHS
] + [(None, None)]
guide, x_o = guides["long"]
draws = guide.sample(4, x=x_o)
fields = rf.gabor(*(draws[k] for k in rf.PARAMETER_NAMES[:-1]), image_size=9)
panels += [(f"posterior draw {i + 1}", fields[i]) for i in range(4)]
for ax, (title, image) in zip(axes.flat, panels):
    ax.axis("off")
    if image is None:
        continue
    limit = image.abs().max()
    ax.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(title, fontsize=8)
fig.tight_layout()
fig.savefig(os.path.join(OUT, "rf_fields.png"), dpi=80)
plt.close(fig)

# %% [markdown]
# ## Measured at full budget
#
# `python tutorials/receptive_field.py` (10,000 simulations per recording length, 1,000 NUTS
# draws after 1,000 warmup steps) on the project's 2-core CPU machine with one torch thread,
# 2026-11-30, 6.3 min in all:
#
# | recording | spikes | NUTS on the spikes | NPE training | C2ST | largest mean error (NUTS sd) | largest sd error |
# |---|---|---|---|---|---|---|
# | short, 400 frames | 86 | 131 s, ESS 374 | 30 s (53 epochs) | 0.841 | 1.46 | 0.96 |
# | long, 4,000 frames | 826 | 126 s, ESS 344 | 45 s (88 epochs) | 0.925 | 1.56 | 2.09 |
#
# NUTS is exact here up to Monte Carlo error (the GLM's likelihood), and the summary is
# sufficient, so the whole C2ST gap is the amortized guide's. At this budget NPE finds the
# right receptive field (its draws above look like the truth) but its posterior is too wide:
# about twice NUTS's sd at the short recording and three times at the long one, where 826 spikes
# pin the orientation to 0.03 rad and the position to a tenth of a pixel, a thousandth of the
# prior's volume per parameter pair that a guide trained on the whole prior has to resolve. The
# simulations are cheap (10,000 in under a second); the budget is the training. More
# simulations, or sequential NPE (`lfi.SNPE`) at the one recording, are the way to close the
# gap (not measured here).
