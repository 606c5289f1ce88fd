"""``python -m pyro_lfi.benchmark.grid``: cells scored at several observations, merged across runs."""

import dataclasses
import json

import pytest

from pyro_lfi.benchmark import grid
from pyro_lfi.benchmark.tasks import get_task


def cell(task="two_moons", budget=10_000, library="pyro_lfi", method="nsf", c2st=(0.55,), train=10.0):
    return grid.Cell(task, budget, library, method, 0, list(range(1, len(c2st) + 1)), list(c2st), train, 0.05, 30,
                     "2026-12-01", "x86_64", 2)


def test_a_cell_is_trained_once_and_scored_at_every_observation():
    result = grid.run_cell(get_task("gaussian_linear"), 300, "pyro_lfi", "nsf", [1, 2], seed=0, num_draws=300)
    assert result.observations == [1, 2] and len(result.c2st) == 2
    assert all(0.5 <= s <= 0.85 for s in result.c2st), result.c2st  # 300 simulations of a 10-D linear Gaussian: ~0.63
    assert result.train_seconds > 0 and result.sample_seconds > 0 and result.epochs > 0
    with pytest.raises(ValueError, match="unknown cell"):
        grid.run_cell(get_task("gaussian_linear"), 500, "sbi", "ensemble", [1])


@pytest.mark.filterwarnings("ignore:.*importance")  # a few hundred draws from a crude likelihood
def test_a_likelihood_cell_draws_each_observation_from_the_surrogate():
    result = grid.run_cell(get_task("two_moons"), 1_000, "pyro_lfi", "nle", [1, 2], seed=0, num_draws=300)
    assert len(result.c2st) == 2 and max(result.c2st) <= 0.8, result.c2st  # 300 draws: ~0.5 +- 0.05
    assert result.train_seconds > 0 and result.epochs > 0


def test_merge_replaces_a_cell_run_again_and_keeps_the_others():
    old = [cell(c2st=(0.6,)), cell(method="fmpe"), cell(library="sbi")]
    merged = grid.merge(old, [cell(c2st=(0.52, 0.54)), cell(budget=1_000)])
    assert [(c.budget, c.library, c.method) for c in merged] == [
        (1_000, "pyro_lfi", "nsf"), (10_000, "pyro_lfi", "fmpe"), (10_000, "pyro_lfi", "nsf"), (10_000, "sbi", "nsf")]
    assert merged[2].c2st == [0.52, 0.54] and merged[2].mean_c2st == pytest.approx(0.53)


def test_table_shows_the_published_best_the_time_against_sbi_and_the_winner():
    cells = [cell(c2st=(0.52, 0.54), train=10.0), cell(method="npse", c2st=(0.56,)), cell(library="sbi", train=40.0),
             cell(task="slcp", method="npse", c2st=(0.7,)), cell(task="slcp", c2st=(0.8,))]
    table = grid.format_grid(cells)
    row = "| two_moons | 10,000 | 0.513 | pyro_lfi | nsf | 0.530 | 2 | 10.0 | 0.25 | 0.050 | 2026-12-01, 2 threads |"
    assert row in table
    assert "| two_moons | 10,000 | 0.513 | sbi | nsf | 0.550 | 1 | 10.0 |  |" not in table  # sbi has no ratio
    assert grid.default_estimator(cells) == {"nsf": 1, "npse": 1}
    assert grid.default_estimator(cells[:2]) == {"nsf": 1}


def test_summary_is_one_row_per_task_and_budget_with_pyro_lfis_best_in_bold():
    cells = [cell(c2st=(0.52, 0.54), train=10.0), cell(method="nle", c2st=(0.51, 0.53)),
             cell(library="sbi", train=40.0), cell(task="slcp", budget=1_000, c2st=(0.9,))]
    lines = grid.format_summary(cells).splitlines()
    assert lines[0] == "| task, budget (published best) | pyro_lfi nsf | pyro_lfi nle | sbi nsf |"
    assert lines[2] == "| two_moons, 10,000 (0.513), 1/2 obs. | 0.530 (10.0) | **0.520 (10.0)** | 0.550 (40.0) |"
    assert lines[3] == "| slcp, 1,000 (0.831), 1 obs. | **0.900 (10.0)** |  |  |"


def test_cli_runs_a_subset_merges_it_and_reprints_without_running(tmp_path, capsys):
    results, plot = tmp_path / "grid.json", tmp_path / "grid.png"
    grid.save_cells([cell(task="slcp")], results)
    grid.main(["--tasks", "gaussian_linear", "--budgets", "300", "--methods", "nsf", "--sbi-methods",
               "--observations", "1", "--num-draws", "300", "--results", str(results), "--plot", str(plot)])
    saved = json.loads(results.read_text())
    assert [(r["task"], r["budget"]) for r in saved] == [("gaussian_linear", 300), ("slcp", 10_000)]
    assert plot.stat().st_size > 0
    capsys.readouterr()
    grid.main(["--table-only", "--results", str(results)])
    out = capsys.readouterr().out
    assert "| gaussian_linear | 300 |  | pyro_lfi | nsf |" in out and "| slcp | 10,000 | 0.646 |" in out
    assert "Cells won by each pyro_lfi estimator" in out
    assert [dataclasses.asdict(c) for c in grid.load_cells(results)] == saved
