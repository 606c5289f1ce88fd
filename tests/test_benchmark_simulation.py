"""The simulation benchmark runs end to end at a tiny size and prints its tables."""

from pyro_lfi.benchmark import simulation


def test_tiny_simulation_benchmark(capsys):
    simulation.main(["--num-simulations", "3000", "--overhead-batch-sizes", "5000", "1000", "--repeats", "1",
                     "--calls", "8", "--call-ms", "1", "--batch-size", "2", "--no-dask"])
    out = capsys.readouterr().out
    assert "| lfi.simulate, default batch_size |" in out
    assert "| lfi.simulate, batch_size=3,000 |" in out and "| lfi.simulate, batch_size=1,000 |" in out
    assert "| process pool | 2 |" in out and "dask" not in out


def test_calibrated_work_takes_about_the_asked_time():
    import time

    iterations = simulation.calibrate(20.0)
    start = time.perf_counter()
    simulation._spin(iterations)
    assert 0.002 < time.perf_counter() - start < 0.5
