"""``python -m pyro_lfi.benchmark.pyloric`` on a tiny protocol, the fused scheme uncompiled."""

import json

import pytest
import torch

from pyro_lfi.benchmark import pyloric as bench
from pyro_lfi.models import pyloric as pl

TINY = pl.Protocol(duration=20.0, burn_in=5.0)


def test_measurements_return_rates_and_fractions():
    assert bench.measure_compile(TINY, backend="eager") > 0
    params, noise = bench.draws(2, TINY)
    eager, eager_features = bench.measure("eager", params, noise, TINY)
    fused, fused_features = bench.measure("fused", params, noise, TINY, backend="eager")
    for row in (eager, fused):
        assert row["sims_per_min"] > 0 and row["batch"] == 2 and 0 <= row["valid"] <= 2
    assert eager_features.shape == fused_features.shape == (2, 18)
    agreement = bench.measure_agreement(fused_features, eager_features)
    assert 0.0 <= agreement["same_features"] <= 1.0 and agreement["num"] == 2
    assert 0.0 <= bench.measure_valid(3, TINY, backend="eager")["valid_fraction"] <= 1.0


def test_agreement_compares_nan_patterns_and_values():
    a = torch.tensor([[1.0, float("nan")], [1.0, 2.0], [1.0, 2.0]])
    b = torch.tensor([[1.0, float("nan")], [1.0, float("nan")], [1.5, 2.0]])
    assert bench.measure_agreement(a, b)["same_features"] == 1 / 3


def test_report_formats_the_numbers():
    rates = [{"implementation": "eager", "batch": 16, "seconds": 2.0, "sims_per_min": 480.0, "valid": 3},
             {"implementation": "fused", "batch": 16, "seconds": 0.2, "sims_per_min": 4800.0, "valid": 3},
             {"implementation": "fused", "batch": 256, "seconds": 1.0, "sims_per_min": 15360.0, "valid": 40}]
    agreement = {"num": 16, "same_features": 0.9375, "rtol": 0.01, "atol": 0.01}
    valid = {"num": 256, "valid_fraction": 0.125}
    dask = {"workers": 2, "num": 256, "seconds": 2.0, "sims_per_min": 7680.0}
    report = bench.format_report(rates, 12.3, agreement, valid, dask, TINY)
    for text in ("| fused | 16 | 4,800.0 | 10.0x | 3 of 16 |", "| fused | 256 | 15,360.0 | - | 40 of 256 |",
                 "32.0x", "12.3 s", "94% of 16", "12.5% of 256", "7,680.0 simulations/min", "20 ms", "5 ms burn-in"):
        assert text in report, text
    assert "Skipped: dask.distributed is not installed." in bench.format_report(
        rates, 1.0, agreement, valid, "dask.distributed is not installed", TINY)


def test_cli_parses_and_writes_json(tmp_path, capsys):
    path = tmp_path / "pyloric.json"
    bench.main(["--duration-ms", "20", "--burn-in-ms", "5", "--batch-sizes", "1", "2", "--eager-batch-sizes", "2",
                "--num-prior", "2", "--no-dask", "--backend", "eager", "--threads", "1", "--json", str(path)])
    out = json.loads(path.read_text())
    assert [r["implementation"] for r in out["rates"]] == ["eager", "fused", "fused"]
    assert all(r["sims_per_min"] > 0 for r in out["rates"])
    assert 0.0 <= out["agreement"]["same_features"] <= 1.0 and out["protocol"]["duration"] == 20.0
    assert out["dask"] == "dask measurement switched off"
    assert "## Throughput (20 ms" in capsys.readouterr().out


def test_campaign_table_lists_every_round_and_each_arms_totals():
    common = {"simulate_seconds": 50.0, "train_seconds": 20.0, "propose_seconds": 1.5, "wall_seconds": 400.0}
    rows = [{**common, "arm": "restricted", "round": 0, "proposal": "prior", "num": 10_000, "valid_fraction": 0.0151,
             "training_rows": 151, "propose_seconds": 0.0, "predictive_valid": 0.25},
            {**common, "arm": "restricted", "round": 1, "proposal": "truncated prior, restricted to P(valid) >= 0.0123",
             "num": 2_000, "valid_fraction": 0.31, "training_rows": 771, "predictive_valid": 0.25},
            {**common, "arm": "impute", "round": 0, "proposal": "prior", "num": 10_000, "valid_fraction": 0.0151,
             "training_rows": 4_000, "predictive_valid": 0.5}]
    table = bench.format_campaign(rows)
    assert "| restricted | 0 | prior | 10,000 | 1.5% | 151 | 0.0 | 50.0 | 20.0 |" in table
    assert "| restricted | 1 | truncated prior, restricted to P(valid) >= 0.0123 | 2,000 | 31.0% | 771 | 1.5 |" in table
    assert "| restricted | 12,000 | 771 (6.4%) | 400 | 25.0% |" in table
    assert "| impute | 10,000 | 151 (1.5%) | 400 | 50.0% |" in table


def test_campaign_refuses_an_unknown_arm():
    with pytest.raises(ValueError, match="arm must be one of"):
        bench.measure_campaign(TINY, 10, 2, 10, arm="restrict")
