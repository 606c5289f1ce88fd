"""Benchmark tasks with reference posteriors, peer baselines and the benchmark runner."""
