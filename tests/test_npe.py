import os
import subprocess
import sys
from pathlib import Path

import pyro.optim
import pytest
import torch

import pyro_lfi as lfi

from .models import fragile_model, linear_model


def test_step_decreases_the_loss():
    sims = lfi.simulate(linear_model, 512, seed=0, progress=False)
    npe = lfi.NPE(linear_model, lfi.NeuralPosterior(linear_model, estimator="mdn"),
                  optim=pyro.optim.Adam({"lr": 3e-3}))
    first = npe.step(sims)
    for _ in range(60):
        last = npe.step(sims)
    assert last < first - 0.5
    assert npe.optimizer.param_groups[0]["lr"] == 3e-3


def test_run_simulates_then_trains_and_returns_the_simulations():
    npe = lfi.NPE(linear_model, lfi.NeuralPosterior(linear_model), progress=False, max_epochs=3)
    sims = npe.run(300, seed=5)
    assert len(sims) == 300 and sims.seed == 5
    assert len(npe.history) == 1 and npe.history[0].epochs == 3
    assert npe.guide.sample(4, x=torch.zeros(3))["theta"].shape == (4, 2)


def test_training_history_early_stopping_and_best_checkpoint():
    sims = lfi.simulate(linear_model, 400, seed=0, progress=False)
    guide = lfi.NeuralPosterior(linear_model)
    npe = lfi.NPE(linear_model, guide, progress=False, seed=0, stop_after_epochs=3, learning_rate=3e-2)
    history = npe.train(sims)
    assert history.converged and history.epochs == history.best_epoch + 4
    # the restored weights are those of the best epoch
    x, z = npe.tensors(sims)
    assert history.best_validation_loss == min(history.validation_loss)
    assert torch.isfinite(torch.tensor(history.train_loss)).all()
    assert history.seconds > 0
    assert len(x) == len(z) == 400


def test_invalid_rows_are_excluded():
    sims = lfi.simulate(fragile_model, 300, seed=0, progress=False)
    npe = lfi.NPE(fragile_model, lfi.NeuralPosterior(fragile_model), progress=False, max_epochs=2)
    x, z = npe.tensors(sims)
    assert len(x) == len(z) == sims.num_valid < len(sims)
    assert torch.isfinite(x).all()
    npe.train(sims)


def test_custom_optimizer_callable_and_device():
    sims = lfi.simulate(linear_model, 200, seed=0, progress=False)
    npe = lfi.NPE(linear_model, lfi.NeuralPosterior(linear_model),
                  optim=lambda params: torch.optim.SGD(params, lr=1e-2), progress=False, max_epochs=2)
    npe.train(sims, device="cpu")
    assert isinstance(npe.optimizer, torch.optim.SGD)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_on_cuda():
    sims = lfi.simulate(linear_model, 500, seed=0, progress=False)
    guide = lfi.NeuralPosterior(linear_model)
    lfi.NPE(linear_model, guide, progress=False, max_epochs=2).train(sims, device="cuda")
    assert guide.sample(10, x=torch.zeros(3))["theta"].device.type == "cuda"


def test_quickstart_tutorial_runs(tmp_path):
    script = Path(__file__).parents[1] / "tutorials" / "quickstart.py"
    env = {**os.environ, "PYRO_LFI_FAST": "1", "PYRO_LFI_OUT": str(tmp_path)}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "posterior draws: {'theta': (1000, 2)}" in out.stdout
    assert "C2ST against the exact posterior: 0." in out.stdout
    assert (tmp_path / "quickstart_pair.png").stat().st_size > 10_000


def test_seed_fixes_initial_weights_and_training():
    sims = lfi.simulate(linear_model, 200, seed=0, progress=False)
    draws = []
    for _ in range(2):
        guide = lfi.NeuralPosterior(linear_model)
        lfi.NPE(linear_model, guide, progress=False, seed=3, max_epochs=3).train(sims)
        torch.manual_seed(0)
        draws.append(guide.sample(5, x=torch.zeros(3))["theta"])
    assert torch.equal(draws[0], draws[1])
