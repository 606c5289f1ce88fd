"""What training reports while it runs: callbacks after every epoch, the loss plot, and progress
bars that print lines rather than redraw when the output is a log."""

import io
import logging

import matplotlib
import pytest
import torch

import pyro_lfi as lfi
from pyro_lfi import progress
from pyro_lfi.infer import EpochReport, LogEpochs, TensorBoardLogger
from pyro_lfi.infer.loop import train_loop

matplotlib.use("Agg")


def fit_line(**options) -> lfi.TrainingHistory:
    torch.manual_seed(0)
    line = torch.nn.Linear(1, 1)
    x = torch.randn(200, 1, generator=torch.Generator().manual_seed(1))
    config = lfi.TrainingConfig(**{"batch_size": 20, "max_epochs": 6, "seed": 0, "progress": False, **options})
    optimizer = torch.optim.Adam(line.parameters(), lr=0.05)
    return train_loop(line, lambda xb, yb: ((line(xb) - yb) ** 2).mean(), (x, 3 * x - 1), optimizer, config)


def test_callbacks_see_every_epoch_and_one_can_stop_training():
    reports = []
    history = fit_line(callbacks=[reports.append])
    assert [r.epoch for r in reports] == list(range(history.epochs))
    assert all(isinstance(r, EpochReport) for r in reports)
    assert [r.train_loss for r in reports] == history.train_loss
    assert [r.validation_loss for r in reports] == history.validation_loss
    assert reports[-1].best_validation_loss == history.best_validation_loss and reports[-1].learning_rate > 0

    stopped = fit_line(callbacks=lambda report: report.epoch == 2)
    assert stopped.epochs == 3 and stopped.events[-1].kind == "stopped"


def test_callbacks_are_checked_and_npe_passes_them_on(caplog):
    with pytest.raises(TypeError, match="callbacks"):
        lfi.TrainingConfig(callbacks=[1])
    with caplog.at_level(logging.INFO, logger="pyro_lfi"):
        fit_line(callbacks=[LogEpochs(every=2)])
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["epoch 0", "epoch 2", "epoch 4"]
    with pytest.raises(ValueError, match="every"):
        LogEpochs(every=0)


def test_tensorboard_logger_needs_tensorboard_or_says_so(tmp_path):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install tensorboard"):
            TensorBoardLogger(tmp_path)
        return
    logger = TensorBoardLogger(tmp_path)
    fit_line(callbacks=[logger])
    assert logger.step == 6 and any(tmp_path.iterdir())


def test_history_plot_marks_the_restored_epoch():
    history = fit_line()
    ax = history.plot()
    assert len(ax.get_lines()) == 3  # training, validation, the restored epoch
    assert ax.get_xlabel() == "epoch"


def test_a_bar_in_a_log_prints_plain_lines(monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)
    log = io.StringIO()
    with progress.progress_bar(total=5, desc="simulate", file=log) as bar:
        for _ in range(5):
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and lines[-1].startswith("simulate: 100% 5/5")
    assert len(lines) == len(set(lines))  # the closing redraw is not repeated
