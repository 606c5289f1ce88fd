# %% [markdown]
# # The pyloric network: 31 parameters, 1 % of simulations valid
#
# The pyloric rhythm of the crab's stomatogastric ganglion is the textbook case of "similar
# network activity from disparate circuit parameters" (Prinz, Bucher & Marder 2004): three model
# neurons (AB/PD, LP, PY), each with 8 maximal membrane conductances, coupled by 7 synapses, 31
# parameters in all. Gonçalves, Lueckmann, Deistler et al. (2020) fitted it by neural posterior
# estimation, and Deistler, Macke & Gonçalves (2022) made the fit efficient by restricting the
# simulations to where the simulator produces a rhythm at all. This tutorial repeats that study
# with pyro_lfi on one CPU:
#
# 1. a **campaign where almost everything fails**: under the prior only about 1.5 % of the
#    simulations give a triphasic rhythm (every feature defined);
# 2. **sequential estimation with a restricted proposal** (`lfi.SNPE(..., restrict=...)`): a
#    classifier of $P(\text{valid} \mid \theta)$, trained on every simulation so far, keeps later
#    rounds where the simulator works, and the valid fraction climbs round by round;
# 3. the **posterior's structure** (`lfi.analysis`): two far-apart parameter sets with the same
#    rhythm, the high-probability path that connects them (the rhythm holds along it and breaks on
#    a path across it), and the direction of the narrowest posterior, along which a small step
#    breaks the circuit.
#
# Run: `python tutorials/pyloric.py` (`PYRO_LFI_FAST=1` for the small budget the test suite uses;
# `PYRO_LFI_OUT=dir` for the figures). The simulator is `torch.compile`d (a minute or two the first
# time on a machine, seconds afterwards); the fast mode keeps it and shortens the recording instead.

# %%
import functools
import os
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import pyro_lfi as lfi
from pyro_lfi.models import pyloric as pl

FAST = os.environ.get("PYRO_LFI_FAST") == "1"
OUT = os.environ.get("PYRO_LFI_OUT", ".")
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))

# Budgets. The published campaigns simulate 11 s (1 s burn-in) per parameter set; here the rhythm
# is read from 3 s after a 1 s burn-in (2-4 cycles of the usual 0.5-2 s period), and in the fast
# mode from 2 s after 0.5 s, to keep the run on a laptop.
if FAST:
    PROTOCOL = pl.Protocol(duration=2_500.0, burn_in=500.0)
    FIRST_ROUND, LATER_ROUNDS, PER_ROUND, MAX_EPOCHS = 2_000, 2, 1_000, 30
else:
    PROTOCOL = pl.Protocol(duration=4_000.0, burn_in=1_000.0)
    FIRST_ROUND, LATER_ROUNDS, PER_ROUND, MAX_EPOCHS = 20_000, 4, 5_000, 500
# propose where P(valid | theta) >= gamma, gamma such that about 5 % of valid parameters fall below it
RESTRICTION = lfi.Restriction(false_negatives=0.05)
model = functools.partial(pl.pyloric_model, protocol=PROTOCOL)
simulator = functools.partial(pl.pyloric_simulator, protocol=PROTOCOL)
NAMES = pl.PARAMETER_NAMES

# %% [markdown]
# ## The model
#
# `pyro_lfi.models.pyloric.pyloric_model` is an ordinary Pyro model: `theta ~ pyloric_prior()`,
# the 24 membrane conductances uniform and the 7 synaptic strengths log-uniform over the ranges of
# Gonçalves et al. (2020), and `x ~ lfi.Simulator(pyloric_simulator, theta)`, the 18 features
# of the rhythm: the cycle period; burst duration and duty cycle of each neuron; the phases at
# which LP and PY start and end their bursts; delays and gaps between the neurons' bursts; the
# plateau durations (Prinz et al. 2004; Deistler et al. 2022). A feature is NaN where it is
# undefined (a neuron that does not burst, a rhythm that is not triphasic), and `lfi.simulate`
# records such a row as invalid: it is kept with its parameters, for the classifier below.
#
# The observation is synthetic: the rhythm of the bursting circuit of the reference
# implementation's tests (github.com/mackelab/pyloric), simulated once with this protocol.

# %%
BURSTING = torch.tensor(pl.BURSTING_CIRCUIT)  # a triphasic rhythm with a period of about 1 s
torch.manual_seed(1)
x_o = simulator(BURSTING[None])[0]
assert x_o.isfinite().all(), "the observed circuit must give a triphasic rhythm"
print("observed rhythm:", {n: round(float(v), 3) for n, v in zip(pl.FEATURE_NAMES, x_o)})

# %% [markdown]
# ## Sequential estimation with a restricted proposal
#
# Round 0 simulates from the prior: about 1.5 % of the rows are valid. TSNPE (Deistler et al.
# 2022) then proposes from the prior truncated to the current posterior estimate's
# highest-density region at $x_o$, and `restrict=RESTRICTION` cuts that region further to where
# a classifier of $P(\text{valid} \mid \theta)$, trained on every simulation so far (valid and
# invalid), predicts at least $\gamma$. With 1.5 % valid rows the classifier is calibrated to that
# base rate and predicts 0.5 almost nowhere, so $\gamma$ is not a fixed probability here but the
# 5 % quantile of its predictions at the valid simulations (`Restriction(false_negatives=0.05)`,
# the rule of sbi's `RestrictionEstimator`). The predictions are held out (5-fold cross-fitting):
# the classifier rates the valid rows it was trained on too highly, and a quantile of those would
# reject several times more valid parameters than asked. The classifier is tested first on each
# candidate, the flow only on those it lets through, so a proposal that keeps 1 in 100 prior draws
# costs little.
#
# The guide is trained on the valid rows: a posterior conditioned on a valid rhythm, which is
# what the observation is. Restricting the proposal leaves the TSNPE loss (plain NPE) unbiased
# inside the restricted region, and the posterior at a valid observation lies there.

# %%
warnings.filterwarnings("ignore", message=".*too few to learn a posterior")  # expected: rows are 98 % invalid
guide = lfi.NeuralPosterior(model, observed="x", estimator="nsf")
snpe = lfi.SNPE(model, guide, method="tsnpe", restrict=RESTRICTION, progress=False, max_epochs=MAX_EPOCHS, seed=0)
start = time.perf_counter()
snpe.run(x=x_o, num_rounds=1, simulations_per_round=FIRST_ROUND, seed=0)
snpe.run(x=x_o, num_rounds=LATER_ROUNDS, simulations_per_round=PER_ROUND, seed=1)
wall = time.perf_counter() - start
table = snpe.history_table()
table["valid fraction"] = 1 - table["fraction_invalid"]
print(table[["round", "num_simulations", "valid fraction", "num_training_rows", "epochs", "simulate_seconds",
             "train_seconds"]].round(3).to_string(index=False))
total = int(table["num_simulations"].sum())
valid = int((table["num_simulations"] - table["num_invalid"]).sum())
print(f"TSNPE, restricted: {len(table)} rounds, {total} simulations ({valid} valid) in {wall:.0f} s")

fig, ax = plt.subplots(figsize=(5, 3), layout="constrained")
ax.bar(table["round"], table["valid fraction"], color="tab:blue")
ax.set(xlabel="round", ylabel="valid fraction", title="Triphasic rhythms among the simulations")
fig.savefig(os.path.join(OUT, "pyloric_rounds.png"), dpi=80)
plt.close(fig)

# %% [markdown]
# At full budget (2026-12-01, a 2-core laptop-class CPU): the 20,000 prior simulations were 1.8 %
# valid (178 s); the four restricted rounds of 5,000 were 3.5 %, 3.6 %, 3.4 % and 4.4 % valid,
# 45 s each: 40,000 simulations and 1,108 valid rows in 403 s. The restriction doubles the valid
# fraction, but its classifier is trained on a few hundred valid rows in 31 dimensions; the
# published campaigns simulate millions. The fast mode (`PYRO_LFI_FAST=1`) has too few valid rows
# for the classifier to help.
#
# Other ways through the same campaign (`python -m pyro_lfi.benchmark.pyloric --campaign-arms`,
# table in the README): without the restriction TSNPE's later rounds stay at the prior's 2 %,
# because its truncated prior spans nearly all 31 dimensions; training on partly defined rows
# too (`missing="impute"`) helps neither the valid fraction nor the posterior; APT, proposing from
# the posterior estimate itself, makes 8-19 % of its simulations valid and gathers four times
# the valid rows, but its final guide puts fewer draws on a triphasic rhythm (13 % against 20 %).
#
# ## Posterior predictive rhythms
#
# Simulate the features at posterior draws: how many give a triphasic rhythm, and how close it
# is to the observation. Closeness is the mean absolute difference over the 18 features, each in
# units of its standard deviation over every valid simulation of the run.

# %%
NUM_PREDICTIVE = 100 if FAST else 500
valid_x = snpe.simulations["x"][snpe.simulations.valid]
feature_scale = valid_x.std(0).clamp_min(1e-3)


def discrepancy(x: torch.Tensor) -> torch.Tensor:
    """Mean standardized distance of each row's features to x_o; NaN for an invalid rhythm."""
    return ((x - x_o) / feature_scale).abs().mean(-1)


def unit_box(theta: torch.Tensor) -> torch.Tensor:
    """The parameters mapped to [0, 1] by their prior ranges (synapses on the log scale)."""
    low, high = torch.tensor(pl.PRIOR_LOW), torch.tensor(pl.PRIOR_HIGH)
    log = torch.arange(31) >= 24
    theta, low, high = (torch.where(log, v.log(), v) for v in (theta, low, high))
    return (theta - low) / (high - low)


torch.manual_seed(2)
draws = guide.sample(NUM_PREDICTIVE, x=x_o)["theta"]
predicted = simulator(draws)
distance = discrepancy(predicted)
ok = distance.isfinite()
print(f"posterior predictive: {int(ok.sum())} of {len(draws)} draws give a triphasic rhythm; "
      f"median distance to x_o {distance[ok].median():.2f} feature sd")
prior_draws = pl.pyloric_prior().sample((NUM_PREDICTIVE,))
prior_distance = discrepancy(simulator(prior_draws))
print(f"prior predictive: {int(prior_distance.isfinite().sum())} of {NUM_PREDICTIVE} triphasic")

# %% [markdown]
# ## Similar rhythms from disparate circuits
#
# Among the posterior draws whose rhythm is close to the observation (distance below the median),
# take the two that lie farthest apart in the prior's box (each parameter scaled to [0, 1] by its
# prior range). Their traces look alike although their conductances differ by a large fraction of
# the prior's range: the posterior is broad in some directions and the circuit compensates.

# %%
close = torch.nonzero(ok & (distance <= distance[ok].median())).flatten()
box = unit_box(draws[close])
pair = torch.cdist(box, box).argmax()
a, b = close[pair // len(close)], close[pair % len(close)]
theta_a, theta_b = draws[a], draws[b]
print(f"two draws {torch.dist(unit_box(theta_a), unit_box(theta_b)):.2f} apart in the unit box, "
      f"distances to x_o {distance[a]:.2f} and {distance[b]:.2f} feature sd")
largest = (unit_box(theta_a) - unit_box(theta_b)).abs().topk(5).indices
for i in largest.tolist():
    print(f"  {NAMES[i]:>16}: {float(theta_a[i]):9.3f} vs {float(theta_b[i]):9.3f} {pl.PARAMETER_UNITS[i]}")

SHOWN_MS = 1_500.0  # the last 1.5 s of each trace


def traces(theta: torch.Tensor, seed: int = 3) -> torch.Tensor:
    """Membrane potentials [n, 3, T] every 1 ms (subsample 40 at dt = 0.025 ms)."""
    torch.manual_seed(seed)
    return pl.simulate(theta, output="trace", subsample=40, protocol=PROTOCOL)


def plot_traces(rows: list[tuple[str, torch.Tensor]], path: str) -> None:
    shown = int(SHOWN_MS)
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 1.9 * len(rows)), sharex=True, layout="constrained")
    time_ms = np.arange(shown)
    for ax, (label, v) in zip(np.atleast_1d(axes), rows):
        for j, (name, color) in enumerate(zip(pl.NEURONS, ("k", "tab:red", "tab:blue"))):
            ax.plot(time_ms, v[j, -shown:].numpy() - 120 * j, color=color, lw=0.6, label=name)
        ax.set(title=label, yticks=[])
    np.atleast_1d(axes)[0].legend(loc="upper right", fontsize=7, ncol=3)
    np.atleast_1d(axes)[-1].set_xlabel("time (ms)")
    fig.savefig(os.path.join(OUT, path), dpi=80)
    plt.close(fig)


v = traces(torch.stack([BURSTING, theta_a, theta_b]))
plot_traces([("observed circuit", v[0]), ("posterior draw A", v[1]), ("posterior draw B", v[2])],
            "pyloric_traces.png")

# %% [markdown]
# ## The high-probability path between them
#
# `lfi.analysis.high_probability_path` optimizes a smooth curve from A to B that minimizes the
# line integral of $-\log q(\theta \mid x_o)$ (in the guide's standardized unconstrained space).
# If the posterior were two islands, every path would cross a valley; Deistler et al. (2022)
# found that the pyloric posterior's good regions are connected. Simulating along the path checks
# this with the simulator itself: the rhythm should stay close to the observation along it, and
# break along a path of the same length across it (`path.orthogonal`, along the posterior's
# narrowest direction at the path's middle).

# %%
NUM_POINTS = 12 if FAST else 40
path = lfi.analysis.high_probability_path(guide, x=x_o, start=theta_a, end=theta_b, num_points=NUM_POINTS,
                                          num_steps=100 if FAST else 400, num_samples=1000)
print(f"path objective F (the shifted line integral of -log q it minimizes): optimized {path.objective:.1f}, "
      f"straight line {path.straight_objective:.1f}; path integral of -log q: {path.path_integral:.1f} and "
      f"{path.straight_integral:.1f}, lengths {path.length:.1f} and {float(path.straight.distance[-1]):.1f}")
along = {}
for label, points in (("path", path), ("straight", path.straight), ("orthogonal", path.orthogonal)):
    torch.manual_seed(4)
    d = discrepancy(simulator(points.values()["theta"]))
    along[label] = d
    median = d.nan_to_num(float("inf")).median()  # an invalid rhythm counts as infinitely far
    print(f"along the {label}: {int(d.isfinite().sum())} of {len(d)} points triphasic, "
          f"median distance {median:.2f} feature sd, min log q {points.log_prob.min():.1f}")

fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True, layout="constrained")
for (label, points), color in zip((("path", path), ("straight", path.straight), ("orthogonal", path.orthogonal)),
                                  ("tab:green", "tab:gray", "tab:red")):
    s = points.distance / points.distance[-1]
    top.plot(s, points.log_prob, color=color, label=label)
    bottom.plot(s, along[label].nan_to_num(np.nan), "o-", color=color, ms=3)
    invalid = ~along[label].isfinite()
    bottom.plot(s[invalid], np.zeros(int(invalid.sum())), "x", color=color)
top.set(ylabel="log q(theta | x_o)")
top.legend(fontsize=8)
bottom.set(xlabel="position along the path", ylabel="distance to x_o (feature sd)",
           title="simulated along each path (x: no triphasic rhythm)")
fig.savefig(os.path.join(OUT, "pyloric_path.png"), dpi=80)
plt.close(fig)

# the traces at the middle of the path and at the two ends of the orthogonal path
middle, ends = NUM_POINTS // 2, [0, NUM_POINTS - 1]
v = traces(torch.cat([path.points[[middle]], path.orthogonal.points[ends]]))
plot_traces([("middle of the high-probability path", v[0]), ("orthogonal path, one end", v[1]),
             ("orthogonal path, other end", v[2])], "pyloric_path_traces.png")

# %% [markdown]
# ## Sensitivity: the direction that breaks the circuit
#
# The active subspace of the posterior, the eigenvectors of $E[\nabla \log q\, \nabla \log
# q^\top]$ over posterior draws (standardized unconstrained space), orders the directions from
# the narrowest (largest eigenvalue) to the widest. A step along the narrowest direction leaves
# the region of good rhythms quickly; the same step along the widest does not.

# %%
subspace = lfi.analysis.active_subspace(guide, x=x_o, num_samples=500 if FAST else 2000)
narrow = subspace.narrowest_direction(theta_a)
top_parameters = np.argsort(-np.abs(narrow.values))[:5]
print("eigenvalues (narrowest first):", np.round(subspace.eigenvalues[:5].numpy(), 2), "...",
      np.round(subspace.eigenvalues[-3:].numpy(), 3))
print("narrowest direction, largest parts:",
      ", ".join(f"{NAMES[i]} {narrow.values[i]:+.2f}" for i in top_parameters))
steps = torch.linspace(-2.0, 2.0, 9)
widest = len(subspace.eigenvalues) - 1
for label, component in (("narrowest", 0), ("widest", widest)):
    moved = subspace.perturb(theta_a, steps, component=component)["theta"]
    torch.manual_seed(5)
    d = discrepancy(simulator(moved))
    print(f"steps along the {label} direction {steps.tolist()}: distance to x_o",
          [round(float(e), 2) for e in d])
moved = torch.cat([subspace.perturb(theta_a, torch.tensor([1.0]), component=c)["theta"] for c in (0, widest)])
v = traces(torch.cat([theta_a[None], moved]))
plot_traces([("posterior draw A", v[0]), ("A, step 1 along the narrowest direction", v[1]),
             ("A, step 1 along the widest direction", v[2])], "pyloric_perturbation.png")

# %% [markdown]
# ## Conditional correlations
#
# Marginal correlations of a 31-dimensional posterior are weak; the dependencies show up when the
# other parameters are held fixed (Gonçalves et al. 2020, Fig. 6): the correlation of each pair
# under $p(\theta_i, \theta_j \mid \theta_{\setminus ij}, x_o)$, averaged over posterior draws as
# conditions.

# %%
corr = lfi.analysis.conditional_correlation(guide, x=x_o, num_conditions=2 if FAST else 10,
                                            resolution=12 if FAST else 20)
upper = np.triu(np.abs(corr.values), 1)
i, j = np.unravel_index(upper.argmax(), upper.shape)
print(f"strongest conditional correlation: {NAMES[i]} and {NAMES[j]}, {corr.values[i, j]:+.2f}")
fig, ax = plt.subplots(figsize=(7, 6), layout="constrained")
image = ax.imshow(corr.values, cmap="RdBu_r", vmin=-1, vmax=1)
ax.set(xticks=range(31), yticks=range(31), title="conditional correlations at x_o")
ax.set_xticklabels(NAMES, rotation=90, fontsize=5)
ax.set_yticklabels(NAMES, fontsize=5)
fig.colorbar(image)
fig.savefig(os.path.join(OUT, "pyloric_correlations.png"), dpi=80)
plt.close(fig)
print(f"done in {time.perf_counter() - start:.0f} s")
