# %% [markdown]
# # Quickstart: two moons
#
# The two-moons simulator (Greenberg et al. 2019) has a crescent-shaped, bimodal posterior that
# a Gaussian approximation cannot represent. We write it as a Pyro model whose data site is a
# black-box `lfi.Simulator`, simulate from the prior, train an amortized neural posterior, and
# look at it with ArviZ.
#
# Run: `python tutorials/quickstart.py` (set `PYRO_LFI_FAST=1` for a small budget).

# %%
import math
import os

import arviz as az
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pyro
import pyro.distributions as dist
import torch

import pyro_lfi as lfi

FAST = os.environ.get("PYRO_LFI_FAST") == "1"
NUM_SIMULATIONS = 2_000 if FAST else 10_000
OUT = os.environ.get("PYRO_LFI_OUT", ".")


# %% [markdown]
# ## The simulator and the model
# Any torch (or numpy) function of the parameters, vectorized over leading batch dims.

# %%
def simulate_moons(theta):
    batch = theta.shape[:-1]
    a = (torch.rand(batch) - 0.5) * math.pi
    r = 0.1 + 0.01 * torch.randn(batch)
    p = torch.stack([r * torch.cos(a) + 0.25, r * torch.sin(a)], -1)
    s = theta[..., 0] + theta[..., 1]
    return p + torch.stack([-s.abs() / math.sqrt(2), (theta[..., 1] - theta[..., 0]) / math.sqrt(2)], -1)


def model(x=None):
    theta = pyro.sample("theta", dist.Uniform(-1.0, 1.0).expand([2]).to_event(1))
    return pyro.sample("x", lfi.Simulator(simulate_moons, theta), obs=x)


# %% [markdown]
# ## Simulate, then train the amortized guide q(theta | x)

# %%
sims = lfi.simulate(model, NUM_SIMULATIONS, seed=0)
print(sims)
guide = lfi.NeuralPosterior(model, observed="x", estimator="nsf")
npe = lfi.NPE(model, guide, seed=0)
history = npe.train(sims)
print(f"trained {history.epochs} epochs in {history.seconds:.1f} s "
      f"(best validation loss {history.best_validation_loss:.3f} at epoch {history.best_epoch})")

# %% [markdown]
# ## Inference for an observation takes milliseconds
# The observation reaches the guide the way it reaches the model: `guide.sample(n, x=x_o)`.

# %%
x_o = torch.tensor([0.0, 0.0])
samples = guide.sample(1000, x=x_o)
print("posterior draws:", {k: tuple(v.shape) for k, v in samples.items()})
print("MAP:", guide.map(x=x_o)["theta"].tolist())

# %% [markdown]
# ## ArviZ: summary, pair plot, posterior predictive check

# %%
idata = lfi.to_inference_data(guide, x=x_o, num_samples=4000, posterior_predictive=True, seed=0)
print(az.summary(idata, kind="stats"))
az.plot_pair(idata, var_names=["theta"], kind="kde", marginals=True)
path = os.path.join(OUT, "quickstart_pair.png")
plt.savefig(path, dpi=80)
print("pair plot written to", path)
