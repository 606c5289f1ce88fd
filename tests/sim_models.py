"""Simulators for the parallel, store and failure tests (importable by subprocesses and workers)."""

import os
import signal
import time

import pyro
import pyro.distributions as dist
import torch

import pyro_lfi as lfi


def slow_moons(theta):
    """A batched simulator that takes 0.05 s per call (for kill-and-resume)."""
    time.sleep(0.05)
    return theta + 0.1 * torch.randn(theta.shape)


def slow_model(x=None):
    theta = pyro.sample("theta", dist.Uniform(-1.0, 1.0).expand([2]).to_event(1))
    return pyro.sample("x", lfi.Simulator(slow_moons, theta), obs=x)


def treacherous(theta):
    """One parameter set at a time: raises where theta[0] > 0.7, hangs where theta[0] < -0.9,
    returns NaN where |theta[0]| < 0.1, and theta plus noise elsewhere."""
    t = float(theta[0])
    if t > 0.7:
        raise RuntimeError("solver diverged")
    if t < -0.9:
        time.sleep(3600)
    if abs(t) < 0.1:
        return torch.full((2,), float("nan"))
    return theta + 0.1 * torch.randn(2)


def treacherous_model(x=None):
    theta = pyro.sample("theta", dist.Uniform(-1.0, 1.0).expand([2]).to_event(1))
    return pyro.sample("x", lfi.Simulator(treacherous, theta, batched=False), obs=x)


def crashing(theta):
    """One parameter set at a time: kills its own process (a segfault in foreign code) where
    theta[0] > 0.8, and returns theta plus noise elsewhere."""
    if float(theta[0]) > 0.8:
        os.kill(os.getpid(), signal.SIGSEGV)
    return theta + 0.1 * torch.randn(2)


def crashing_model(x=None):
    theta = pyro.sample("theta", dist.Uniform(-1.0, 1.0).expand([2]).to_event(1))
    return pyro.sample("x", lfi.Simulator(crashing, theta, batched=False, event_shape=(2,)), obs=x)
