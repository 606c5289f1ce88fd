"""The benchmark command end to end, at a tiny budget and without the peer."""

import json
import math

import pytest

from pyro_lfi.benchmark.__main__ import main
from pyro_lfi.benchmark.runner import Result, format_table


@pytest.mark.slow  # about a minute: both modes end to end, with the sbibm C2ST
def test_benchmark_command(tmp_path, capsys):
    out = tmp_path / "results.json"
    main(["--tasks", "two_moons", "--sequential-tasks", "two_moons", "--num-simulations", "400", "--rounds", "2",
          "--num-draws", "300", "--no-sbi", "--json", str(out), "--sequential-methods", "apt", "tsnpe"])
    table = capsys.readouterr().out
    assert "| two_moons | pyro_lfi | 1 x 400 |" in table and "| two_moons | pyro_lfi APT | 2 x 200 |" in table
    assert "| two_moons | pyro_lfi TSNPE | 2 x 200 |" in table
    results = json.loads(out.read_text())
    expected = [("pyro_lfi", 1), ("pyro_lfi APT", 2), ("pyro_lfi TSNPE", 2)]
    assert [(r["method"], r["rounds"]) for r in results] == expected
    # C2ST is a cross-validated accuracy, noisy around chance (0.5) for a good posterior: its sd
    # there is sqrt(0.25 / 600) = 0.02 for 300 + 300 draws, so a score below 0.5 is no error (it
    # differs between CPUs, as training does); 4 sds below chance would be one.
    chance_sd = math.sqrt(0.25 / (2 * 300))
    for r in results:
        assert 0.5 - 4 * chance_sd <= r["c2st"] <= 1.0 and r["train_seconds"] > 0 and r["sample_seconds"] > 0
    for r in results[1:]:
        assert r["wall_seconds"] >= r["train_seconds"]


@pytest.mark.slow  # a few minutes: NLE and SNRE end to end, with NUTS on the surrogates
def test_benchmark_command_with_learned_likelihoods(tmp_path, capsys):
    out = tmp_path / "results.json"
    main(["--mode", "likelihood", "--likelihood-tasks", "two_moons", "--likelihood-methods", "nle", "snre",
          "--num-simulations", "600", "--rounds", "2", "--num-draws", "400", "--no-sbi", "--json", str(out)])
    results = json.loads(out.read_text())
    assert [(r["method"], r["rounds"]) for r in results] == [("pyro_lfi NLE", 1), ("pyro_lfi SNRE", 2)]
    assert all(r["ess_per_second"] > 0 and r["wall_seconds"] >= r["train_seconds"] for r in results)


def test_each_method_is_timed_against_its_own_peer():
    rows = [Result("slcp", "pyro_lfi SNLE", 2000, 0.7, 10.0, 1.0, 3.0, wall_seconds=50.0, rounds=2,
                   ess_per_second=80.0, propose_seconds=30.0),
            Result("slcp", "sbi SNPE-C", 2000, 0.7, 10.0, 1.0, wall_seconds=500.0, rounds=2),
            Result("slcp", "sbi SNLE", 2000, 0.7, 10.0, 1.0, wall_seconds=200.0, rounds=2, ess_per_second=5.0)]
    table = format_table(rows)
    assert "| slcp | pyro_lfi SNLE | 2 x 1000 | 0.700 | 30.0 | 3.0 | 10.0 | 50.0 | 1.000 | 80 | 0.25 |" in table


def test_an_ode_estimator_is_benchmarked_amortized_only(capsys):
    with pytest.raises(SystemExit):
        main(["--estimator", "fmpe", "--mode", "sequential", "--no-sbi"])
    assert "--estimator fmpe (an ODE estimator) is benchmarked in --mode amortized only" in capsys.readouterr().err
