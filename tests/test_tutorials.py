"""Every tutorial runs top to bottom in its fast mode (PYRO_LFI_FAST=1) and writes its figures (the pyloric one
among the ``slow`` tests: its fast mode still compiles the simulator)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).parents[1] / "tutorials"


def run_tutorial(name: str, out: Path) -> str:
    env = {**os.environ, "PYRO_LFI_FAST": "1", "PYRO_LFI_OUT": str(out)}
    done = subprocess.run([sys.executable, str(TUTORIALS / name)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_calcium_imaging(tmp_path):
    stdout = run_tutorial("calcium_imaging.py", tmp_path)
    assert "NPE" in stdout and "VI" in stdout and "NUTS" in stdout and "c2st" in stdout
    for name in ("calcium_pair.png", "calcium_trace.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_scaling_out(tmp_path):
    stdout = run_tutorial("scaling_out.py", tmp_path)
    assert "simulations on 2 dask workers" in stdout
    assert "identical rows: True" in stdout
    assert "posterior mean" in stdout


def test_hodgkin_huxley_tutorial(tmp_path):
    stdout = run_tutorial("hodgkin_huxley.py", tmp_path)
    assert "NPE: trained" in stdout and "APT: 2 rounds" in stdout
    assert "APT posterior mean" in stdout and "SBC passed:" in stdout
    for name in ("hh_pair.png", "hh_traces.png", "hh_sbc.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_raw_traces_tutorial(tmp_path):
    stdout = run_tutorial("raw_traces.py", tmp_path)
    assert "statistics: trained" in stdout and "raw trace: trained" in stdout
    assert "c2st(statistics, raw trace)" in stdout
    assert (tmp_path / "raw_traces_marginals.png").stat().st_size > 10_000


def test_receptive_field_tutorial(tmp_path):
    stdout = run_tutorial("receptive_field.py", tmp_path)
    assert "short: c2st(NPE, NUTS)" in stdout and "long: c2st(NPE, NUTS)" in stdout
    assert "short: c2st(NLE, NUTS)" in stdout and "long: c2st(NLE, NUTS)" in stdout
    assert (tmp_path / "rf_fields.png").stat().st_size > 5_000 and (tmp_path / "rf_pair.png").stat().st_size > 10_000


def test_integrate_and_fire_tutorial(tmp_path):
    stdout = run_tutorial("integrate_and_fire.py", tmp_path)
    assert "NPE: trained" in stdout and "NLE + NUTS, 3 trials" in stdout and "NLE + NUTS, 10 trials" in stdout
    assert "c2st(NPE, NLE+NUTS)" in stdout and "SBC passed:" in stdout
    assert (tmp_path / "if_raster.png").stat().st_size > 5_000
    assert "3 trials: c2st(NPE, NLE+NUTS)" in stdout and "10 trials: c2st(NPE, NLE+NUTS)" in stdout
    for name in ("if_pair.png", "if_sbc.png", "if_trials.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_many_neurons_tutorial(tmp_path):
    stdout = run_tutorial("many_neurons.py", tmp_path)
    assert "NLE: trained" in stdout and "hierarchy: 20 NUTS draws" in stdout and "NPE: 300 simulations" in stdout
    assert "population median tau" in stdout and "tau: hierarchy: mean |error|" in stdout
    assert "tau: separate NPE: mean |error|" in stdout
    assert (tmp_path / "many_neurons.png").stat().st_size > 10_000


@pytest.mark.slow  # torch.compile of two pyloric kernels: 3-5 min on a machine whose inductor cache is cold
def test_pyloric_tutorial(tmp_path):
    stdout = run_tutorial("pyloric.py", tmp_path)
    assert "TSNPE, restricted: 3 rounds" in stdout and "posterior predictive:" in stdout
    assert "path objective F" in stdout and "along the orthogonal:" in stdout
    assert "narrowest direction, largest parts:" in stdout and "strongest conditional correlation:" in stdout
    for name in ("pyloric_rounds.png", "pyloric_traces.png", "pyloric_path.png", "pyloric_path_traces.png",
                 "pyloric_perturbation.png", "pyloric_correlations.png"):
        assert (tmp_path / name).stat().st_size > 5_000
