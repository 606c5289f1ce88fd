r"""Benchmark tasks with known reference posteriors: sbibm's tasks (Lueckmann et al. 2021,
"Benchmarking Simulation-Based Inference", AISTATS), one module per family.

Each :class:`Task` bundles a prior over a flat parameter vector, a batched black-box
simulator, fixed observations made from fixed "true" parameters, and a sampler of the
reference posterior :math:`p(\theta \mid x_o)`.

============================  ==============  ======================================================
task                          module          reference posterior
============================  ==============  ======================================================
``two_moons``                 two_moons       exact (the simulator inverted)
``gaussian_linear``           gaussian        exact (conjugate normal)
``gaussian_linear_uniform``   gaussian        exact (truncated normal, by rejection)
``gaussian_mixture``          gaussian        exact (truncated mixture, by rejection)
``slcp``                      slcp            NUTS + exact sign symmetry, cached (references)
``slcp_distractors``          slcp            ``slcp``'s at the informative outputs
``bernoulli_glm``             glm             NUTS on the exact likelihood, cached (reference_store)
``bernoulli_glm_raw``         glm             the same posterior (the summary is sufficient)
``sir``                       ode             NUTS on the exact likelihood, cached (reference_store)
``lotka_volterra``            ode             NUTS on the exact likelihood, cached (reference_store)
============================  ==============  ======================================================
"""

from __future__ import annotations

from .base import ReferenceFn, Task, draw_true_parameters
from .gaussian import (
    GAUSSIAN_LINEAR,
    GAUSSIAN_LINEAR_UNIFORM,
    GAUSSIAN_LINEAR_VAR,
    GAUSSIAN_MIXTURE,
    gaussian_linear_simulator,
    gaussian_mixture_simulator,
)
from .glm import (
    BERNOULLI_GLM,
    BERNOULLI_GLM_RAW,
    bernoulli_glm_raw_simulator,
    bernoulli_glm_simulator,
    design_matrix,
    glm_log_likelihood,
    glm_prior_precision,
)
from .ode import (
    LOTKA_VOLTERRA,
    SIR,
    lotka_volterra_log_likelihood,
    lotka_volterra_simulator,
    lotka_volterra_solution,
    rk4,
    sir_log_likelihood,
    sir_simulator,
    sir_solution,
)
from .slcp import (
    SLCP,
    SLCP_DISTRACTORS,
    informative_positions,
    slcp_distractors_simulator,
    slcp_scale_tril,
    slcp_simulator,
)
from .two_moons import TWO_MOONS, two_moons_simulator

__all__ = [
    "GAUSSIAN_LINEAR_VAR",
    "TASKS",
    "ReferenceFn",
    "Task",
    "bernoulli_glm_raw_simulator",
    "bernoulli_glm_simulator",
    "design_matrix",
    "draw_true_parameters",
    "gaussian_linear_simulator",
    "gaussian_mixture_simulator",
    "get_task",
    "glm_log_likelihood",
    "glm_prior_precision",
    "informative_positions",
    "lotka_volterra_log_likelihood",
    "lotka_volterra_simulator",
    "lotka_volterra_solution",
    "rk4",
    "sir_log_likelihood",
    "sir_simulator",
    "sir_solution",
    "slcp_distractors_simulator",
    "slcp_scale_tril",
    "slcp_simulator",
    "two_moons_simulator",
]

TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        TWO_MOONS,
        GAUSSIAN_LINEAR,
        SLCP,
        GAUSSIAN_LINEAR_UNIFORM,
        GAUSSIAN_MIXTURE,
        SLCP_DISTRACTORS,
        BERNOULLI_GLM,
        BERNOULLI_GLM_RAW,
        SIR,
        LOTKA_VOLTERRA,
    )
}


def get_task(name: str) -> Task:
    """The registered task called ``name``."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; available tasks: {', '.join(sorted(TASKS))}") from None
