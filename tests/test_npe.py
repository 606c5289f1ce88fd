import os
import subprocess
import sys
from pathlib import Path

import pyro.optim
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.infer.loop import train_loop

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


def _fit_a_line(ema, on_step=None):
    torch.manual_seed(0)
    line = torch.nn.Linear(1, 1)
    x = torch.randn(64, 1, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.SGD(line.parameters(), lr=0.1)
    if on_step is not None:
        optimizer.register_step_post_hook(lambda *_: on_step(line))
    config = lfi.TrainingConfig(batch_size=8, max_epochs=1, lr_decay=1.0, ema=ema, seed=0, progress=False)
    history = train_loop(line, lambda x, y: ((line(x) - y) ** 2).mean(), (x, 3 * x - 1), optimizer, config)
    return line, history


def test_ema_restores_the_moving_average_of_the_weights():
    steps = []
    _fit_a_line(None, on_step=lambda line: steps.append(torch.cat([line.weight.flatten(), line.bias]).detach()))
    average = steps[0]
    for w in steps[1:]:
        average = 0.7 * average + 0.3 * w
    line, history = _fit_a_line(0.7)
    assert len(steps) == 8  # 58 training rows (6 held out) in batches of 8
    assert torch.allclose(torch.cat([line.weight.flatten(), line.bias]), average, atol=1e-6)
    assert not torch.allclose(average, steps[-1], atol=1e-3)
    # validated with the averaged weights
    assert history.validation_loss[0] == pytest.approx(history.best_validation_loss)


def test_ema_of_zero_is_plain_training_and_bad_decays_are_refused():
    sims = lfi.simulate(linear_model, 200, seed=0, progress=False)
    losses = []
    for ema in (None, 0.0):
        npe = lfi.NPE(linear_model, lfi.NeuralPosterior(linear_model), progress=False, seed=3, max_epochs=3, ema=ema)
        losses.append(npe.train(sims).validation_loss)
    assert losses[0] == losses[1]
    with pytest.raises(ValueError, match="ema"):
        lfi.NPE(linear_model, lfi.NeuralPosterior(linear_model), progress=False, ema=1.0).train(sims)
