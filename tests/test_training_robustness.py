"""The training loop survives non-finite losses and Ctrl-C; every training option takes effect
where it is accepted; too few usable rows get a warning."""

import math
import warnings

import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi.infer import npe as npe_module
from pyro_lfi.infer.loop import MovingAverage, batch_slices, train_loop
from pyro_lfi.infer.sequential import method as method_module
from pyro_lfi.nn.splines import RationalQuadraticSpline

from .models import linear_model

# -- a small problem for the loop itself -----------------------------------------------------------


class Line(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(1, 1)

    def weights(self) -> torch.Tensor:
        return torch.cat([self.linear.weight.flatten(), self.linear.bias]).detach().clone()


def fit(loss_hook=None, state=None, **options):
    """Fit y = 3x - 1 with 60 rows (54 for training: 7 steps per epoch of 8 rows); ``loss_hook(step,
    module, optimizer)`` runs before every training loss and may return a replacement loss. Fills
    and returns ``state`` (also when training raises)."""
    line = Line()
    x = torch.randn(60, 1, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam(line.parameters(), lr=0.05)
    config = lfi.TrainingConfig(**{"batch_size": 8, "max_epochs": 4, "ema": None, "seed": 0, "progress": False,
                                   "lr_decay": 1.0, **options})
    state = {} if state is None else state
    state.update(step=0, validations=[], history=lfi.TrainingHistory(), line=line, optimizer=optimizer)

    def loss(xb, yb):
        value = ((line.linear(xb) - yb) ** 2).mean()
        if not line.training:
            state["validations"].append(line.weights())
            return value
        state["step"] += 1
        replaced = loss_hook(state["step"], line, optimizer) if loss_hook else None
        return value if replaced is None else replaced(value)

    train_loop(line, loss, (x, 3 * x - 1), optimizer, config, state["history"])
    return state


def test_a_nonfinite_loss_skips_the_step_and_restores_the_best_weights():
    seen = {}

    def hook(step, line, optimizer):
        if step == 3:  # epoch 0, before any validation: the initial weights come back
            return lambda value: value * math.nan
        if step == 4:
            seen["weights"], seen["state"] = line.weights(), len(optimizer.state)
        if step == 10:  # epoch 1: the weights of epoch 0 come back
            return lambda value: value + math.inf
        if step == 11:
            seen["weights_10"], seen["lr_10"] = line.weights(), optimizer.param_groups[0]["lr"]
        return None

    state = fit(hook)
    history, line = state["history"], state["line"]
    assert torch.equal(seen["weights"], Line().weights()) and seen["state"] == 0  # fresh optimizer state
    assert torch.equal(seen["weights_10"], state["validations"][0])  # epoch 0's (best) weights
    assert seen["lr_10"] == pytest.approx(0.05 * 0.5**2)  # lr_decay=1: halved at each recovery
    assert history.skipped_steps == history.recoveries == 2
    assert [(e.epoch, e.kind) for e in history.events] == [(0, "nonfinite_loss"), (1, "nonfinite_loss")]
    assert "initial weights" in history.events[0].detail and "epoch 0" in history.events[1].detail
    assert all(math.isfinite(v) for v in history.train_loss + history.validation_loss)
    assert history.epochs == 4 and not history.diverged and torch.isfinite(line.weights()).all()
    assert history.train_loss[-1] < history.train_loss[0]  # it went on learning


def test_a_nonfinite_gradient_and_weights_turned_inf_recover_the_same_way():
    def hook(step, line, optimizer):
        if step == 9:  # epoch 1: a finite loss whose gradient is NaN, d sqrt(0 w) / dw
            return lambda value: value + (line.linear.weight.sum() * 0).sqrt()
        if step == 21:  # the last step of epoch 2 leaves inf weights: its validation is not finite

            def poison(*_):
                with torch.no_grad():
                    line.linear.weight.fill_(math.inf)
                handle.remove()

            handle = optimizer.register_step_post_hook(poison)
        return None

    state = fit(hook, lr_decay=0.5)
    history, line = state["history"], state["line"]
    assert [(e.epoch, e.kind) for e in history.events] == [(1, "nonfinite_gradient"), (2, "nonfinite_validation")]
    assert history.skipped_steps == 1 and history.recoveries == 2
    assert not math.isfinite(history.validation_loss[2]) and history.best_epoch in (0, 1, 3)
    assert torch.isfinite(line.weights()).all() and math.isfinite(history.best_validation_loss)
    assert state["optimizer"].param_groups[0]["lr"] == pytest.approx(0.05 * 0.5**2)
    assert torch.equal(line.weights(), state["validations"][history.best_epoch])


def test_a_nonfinite_validation_loss_is_never_the_best_epoch():
    line = Line()
    x = torch.randn(60, 1, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam(line.parameters(), lr=0.05)
    validations = []

    def loss(xb, yb):
        value = ((line.linear(xb) - yb) ** 2).mean()
        if not line.training:
            validations.append(None)
            return value * math.nan if len(validations) == 2 else value
        return value

    config = lfi.TrainingConfig(batch_size=8, max_epochs=3, ema=None, seed=0, progress=False)
    history = train_loop(line, loss, (x, 3 * x - 1), optimizer, config)
    assert math.isnan(history.validation_loss[1]) and history.best_epoch != 1
    assert [(e.epoch, e.kind) for e in history.events] == [(1, "nonfinite_validation")]
    assert history.skipped_steps == 0 and history.recoveries == 1


def test_training_stops_with_a_warning_when_nonfinite_losses_keep_coming():
    def hook(step, line, optimizer):
        return (lambda value: value * math.nan) if step > 8 else None  # from epoch 1 on

    with pytest.warns(RuntimeWarning, match=r"stopped after 3 non-finite.*weights of epoch 0.*learning_rate"):
        state = fit(hook, max_recoveries=2)
    history, line = state["history"], state["line"]
    assert history.diverged and not history.converged and history.recoveries == 2
    assert history.events[-1].kind == "gave_up" and history.skipped_steps == 3
    assert torch.equal(line.weights(), state["validations"][0]) and not line.training


def test_the_moving_average_restarts_at_the_restored_weights():
    line = Line()
    average = MovingAverage(line, 0.9)
    average.update()
    with torch.no_grad():
        line.linear.weight.add_(1.0)
    average.update()
    average.reset()
    with average.applied():
        assert torch.equal(line.weights(), Line().weights() + torch.tensor([1.0, 0.0]))


def test_spline_log_derivative_is_finite_at_the_bound_of_a_narrow_steep_last_bin():
    # the last knot is the bound only up to rounding; xi slightly above 1 made the log NaN there
    # (the cause of NaN losses seen with learning_rate=3e-2)
    g = torch.Generator().manual_seed(0)
    bins, n = 8, 1000
    params = torch.zeros(n, 3 * bins - 1)
    params[:, : bins - 1] = 20 + 30 * torch.rand(n, bins - 1, generator=g)  # wide bins, the last narrow
    params[:, bins - 1] = -50
    params[:, bins : 2 * bins - 1] = -50
    params[:, 2 * bins - 1] = 50  # and steep
    params[:, 2 * bins :] = 5.0
    spline = RationalQuadraticSpline(params)
    for x in (5.0, 6.0, -5.0, 4.99999):
        y, ladj = spline.call_and_ladj(torch.full((n,), x))
        assert torch.isfinite(ladj).all() and torch.isfinite(y).all()
        if abs(x) > 5:
            assert torch.equal(y, torch.full((n,), x)) and (ladj == 0).all()


# -- Ctrl-C ---------------------------------------------------------------------------------------


def test_ctrl_c_restores_the_best_weights_records_it_and_propagates():
    def hook(step, line, optimizer):
        if step == 17:  # epoch 2
            raise KeyboardInterrupt
        return None

    state = {}
    with pytest.raises(KeyboardInterrupt):
        fit(hook, state, ema=0.0)
    history, line = state["history"], state["line"]
    assert history.interrupted and history.epochs == 2 and not history.converged
    assert history.events[-1].kind == "interrupted" and history.events[-1].epoch == 2
    assert not line.training
    assert torch.equal(line.weights(), state["validations"][history.best_epoch])
    assert not torch.equal(line.weights(), Line().weights())


def _interrupting(loss, at_call: int):
    calls = {"n": 0}

    def wrapped(guide, x, z, *rest):
        if guide.training:
            calls["n"] += 1
            if calls["n"] == at_call:
                raise KeyboardInterrupt
        return loss(guide, x, z, *rest)

    return wrapped


@pytest.fixture(scope="module")
def linear_sims():
    return lfi.simulate(linear_model, 300, seed=0, progress=False)


def test_ctrl_c_in_npe_train_keeps_the_history_and_the_best_weights(linear_sims, monkeypatch):
    guide = lfi.NeuralPosterior(linear_model)
    npe = lfi.NPE(linear_model, guide, progress=False, seed=0, batch_size=64)
    monkeypatch.setattr(npe_module, "npe_loss", _interrupting(npe_module.npe_loss, at_call=12))  # epoch 2
    with pytest.raises(KeyboardInterrupt):
        npe.train(linear_sims)
    history = npe.history[-1]
    assert history.interrupted and history.epochs == 2 and history.events[-1].kind == "interrupted"
    assert "epoch" in history.events[-1].detail and history.seconds > 0
    assert not guide.training
    x, z = npe.tensors(linear_sims)
    with torch.no_grad():  # the weights are a validated checkpoint: its loss is finite, not the last step's
        assert torch.isfinite(npe_module.npe_loss(guide, x, z))
    assert guide.sample(3, x=torch.zeros(3))["theta"].shape == (3, 2)


def test_ctrl_c_in_an_snpe_round_is_recorded_in_the_round(monkeypatch):
    guide = lfi.NeuralPosterior(linear_model)
    snpe = lfi.SNPE(linear_model, guide, method="tsnpe", progress=False, seed=0, batch_size=64)
    monkeypatch.setattr(method_module, "npe_loss", _interrupting(method_module.npe_loss, at_call=8))
    with pytest.raises(KeyboardInterrupt):
        snpe.run(x=torch.zeros(3), num_rounds=2, simulations_per_round=200, seed=0)
    assert len(snpe.rounds) == len(snpe.history) == len(snpe.proposals) == 1
    record = snpe.rounds[0]
    assert record.interrupted and record.epochs == 2 and record.num_training_rows == 200
    assert snpe.history[0].interrupted and not guide.training
    assert len(snpe.simulations) == 200  # nothing simulated is lost


def test_no_batch_is_a_lone_row_so_contrastive_losses_train_on_any_row_count():
    assert [(r.start, r.stop) for r in batch_slices(17, 8)] == [(0, 8), (8, 17)]  # 1 left: joins the last
    assert [(r.start, r.stop) for r in batch_slices(18, 8)] == [(0, 8), (8, 16), (16, 18)]  # 2 left: their own
    assert batch_slices(1, 8) == [slice(0, 1)] and batch_slices(0, 8) == []
    # APT's atomic loss needs two rows a batch: 107 + 107 rows leave 193 for training, 3 x 64 + 1
    guide = lfi.NeuralPosterior(linear_model)
    snpe = lfi.SNPE(linear_model, guide, method="apt", progress=False, seed=0, batch_size=64, max_epochs=2)
    snpe.run(x=torch.zeros(3), num_rounds=2, simulations_per_round=107, seed=0)
    assert snpe.rounds[-1].num_training_rows == 214 and snpe.rounds[-1].epochs == 2


# -- options --------------------------------------------------------------------------------------


def _first_epoch(sims, constructor_seed=None, **call):
    guide = lfi.NeuralPosterior(linear_model)
    npe = lfi.NPE(linear_model, guide, progress=False, seed=constructor_seed, max_epochs=1)
    history = npe.train(sims, **call)
    return torch.tensor(history.train_loss + history.validation_loss), npe


def test_the_seed_of_a_train_call_fixes_the_initial_weights(linear_sims):
    a, _ = _first_epoch(linear_sims, constructor_seed=0, seed=1)
    b, _ = _first_epoch(linear_sims, constructor_seed=1)
    c, _ = _first_epoch(linear_sims, constructor_seed=0)
    d, _ = _first_epoch(linear_sims, constructor_seed=5, seed=1)
    assert torch.allclose(a, b, rtol=1e-5) and torch.allclose(a, d, rtol=1e-5)
    assert not torch.allclose(a, c, rtol=1e-3)


def test_the_seed_fixes_the_draws_a_loss_makes_and_leaves_the_global_stream_alone():
    def noisy_fit(seed: int, global_seed: int) -> torch.Tensor:
        torch.manual_seed(0)
        line = torch.nn.Linear(1, 1)
        x = torch.linspace(-1, 1, 40)[:, None]
        torch.manual_seed(global_seed)  # the caller's stream when training starts

        def loss(xb, yb):  # a loss with draws of its own, like APT's atoms or NPSE's noise
            return ((line(xb) - yb) ** 2).mean() * (1 + 0.5 * torch.rand(()))

        config = lfi.TrainingConfig(batch_size=8, max_epochs=3, ema=None, seed=seed, progress=False, lr_decay=1.0)
        train_loop(line, loss, (x, 3 * x - 1), torch.optim.Adam(line.parameters(), lr=0.05), config)
        return torch.cat([line.weight.flatten(), line.bias]).detach()

    torch.manual_seed(11)
    expected_next = torch.rand(())
    first = noisy_fit(seed=3, global_seed=11)
    assert torch.equal(torch.rand(()), expected_next)  # training drew from a stream of its own
    assert torch.equal(noisy_fit(seed=3, global_seed=12), first)  # the same seed repeats the run
    assert not torch.allclose(noisy_fit(seed=4, global_seed=11), first, atol=1e-4)


def test_the_learning_rate_of_a_train_call_is_the_optimizers(linear_sims):
    _, npe = _first_epoch(linear_sims, seed=0, learning_rate=1e-4, lr_decay=1.0)
    assert npe.optimizer.param_groups[0]["lr"] == 1e-4
    npe.train(linear_sims, lr_decay=1.0)  # the next call: the constructor's again
    assert npe.optimizer.param_groups[0]["lr"] == lfi.TrainingConfig().learning_rate


def test_a_custom_optimizer_keeps_its_learning_rate_unless_one_is_given(linear_sims):
    npe = lfi.NPE(linear_model, lfi.NeuralPosterior(linear_model), optim=lambda p: torch.optim.SGD(p, lr=0.01),
                  progress=False, seed=0, max_epochs=1, lr_decay=1.0)
    npe.train(linear_sims)
    assert npe.optimizer.param_groups[0]["lr"] == 0.01
    npe.train(linear_sims, learning_rate=1e-3)
    assert npe.optimizer.param_groups[0]["lr"] == 1e-3
    npe.train(linear_sims)
    assert npe.optimizer.param_groups[0]["lr"] == 0.01
    given = lfi.NPE(linear_model, lfi.NeuralPosterior(linear_model), optim=lambda p: torch.optim.SGD(p, lr=0.01),
                    progress=False, seed=0, max_epochs=1, lr_decay=1.0, learning_rate=3e-3)
    given.train(linear_sims)
    assert given.optimizer.param_groups[0]["lr"] == 3e-3


def test_snpe_gives_an_explicit_learning_rate_to_a_custom_optimizer():
    made = []

    def sgd(params):
        made.append(torch.optim.SGD(params, lr=0.01))
        return made[-1]

    snpe = lfi.SNPE(linear_model, lfi.NeuralPosterior(linear_model), method="tsnpe", optim=sgd, progress=False,
                    seed=0, max_epochs=1, lr_decay=1.0, learning_rate=1e-3)
    snpe.run(x=torch.zeros(3), num_rounds=1, simulations_per_round=200, seed=0)
    assert [o.param_groups[0]["lr"] for o in made] == [1e-3]


def test_unknown_and_out_of_range_options_are_refused_with_the_valid_ones(linear_sims):
    guide = lfi.NeuralPosterior(linear_model)
    with pytest.raises(TypeError, match=r"NPE\(\.\.\.\) got unknown training option\(s\) \['learnin_rate'\].*"
                                        r"'learning_rate'"):
        lfi.NPE(linear_model, guide, learnin_rate=1e-3)
    npe = lfi.NPE(linear_model, guide, progress=False)
    with pytest.raises(TypeError, match=r"NPE\.train\(\.\.\.\) got unknown.*\['epochs'\].*'max_epochs'"):
        npe.train(linear_sims, epochs=3)
    assert not guide.is_built  # refused before building anything
    with pytest.raises(TypeError, match=r"SNPE\(\.\.\.\) got unknown.*\['patience'\].*'stop_after_epochs'"):
        lfi.SNPE(linear_model, guide, patience=3)
    with pytest.raises(ValueError, match=r"learning_rate=-0\.1 is out of range: it must be positive"):
        npe.train(linear_sims, learning_rate=-0.1)
    with pytest.raises(ValueError, match=r"validation_fraction=1\.0"):
        lfi.TrainingConfig(validation_fraction=1.0)


# -- too few usable rows ----------------------------------------------------------------------------


def _too_few_warnings(record):
    return [str(w.message) for w in record if "too few to learn" in str(w.message)]


def test_too_few_usable_rows_get_a_warning_with_the_reasons(linear_sims):
    sims = linear_sims[torch.arange(300)]
    sims.status[10:200] = lfi.Status.EXCEPTION
    sims.status[200:] = lfi.Status.NONFINITE
    messages = sims.message.copy()
    messages[10:200] = "RuntimeError: solver diverged"
    sims.message = messages
    npe = lfi.NPE(linear_model, lfi.NeuralPosterior(linear_model), progress=False, max_epochs=1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        npe.train(sims)
    (message,) = _too_few_warnings(record)
    assert "only 10 of 300 simulated rows (3.3%)" in message
    assert "ok: 10, nonfinite: 100, exception: 190" in message
    assert "'RuntimeError: solver diverged' (190 rows)" in message
    assert "simulate more" in message and "restrict=" in message and "missing='impute'" in message


def test_enough_usable_rows_train_without_that_warning(linear_sims):
    npe = lfi.NPE(linear_model, lfi.NeuralPosterior(linear_model), progress=False, max_epochs=1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        npe.train(linear_sims)
    assert not _too_few_warnings(record)
