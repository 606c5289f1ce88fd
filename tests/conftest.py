import os

import matplotlib
import pyro
import pytest
import torch
from threadpoolctl import threadpool_limits

matplotlib.use("Agg")

# One thread per process (torch's intra-op pool, numpy's BLAS), here and in the processes the
# tests start (tutorials, simulation workers): the suite's networks and arrays are small, and on a
# 2-core machine threads that spin-wait while another process computes slowed a training run
# 70-fold (30 MAF epochs: 5.7 s on one thread, 414 s on two beside a busy process).
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
threadpool_limits(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _fresh_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
