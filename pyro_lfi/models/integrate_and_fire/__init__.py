r"""The exponential integrate-and-fire neuron, batched in torch, observed through spike trains.

The model of Fourcaud-Trocmé et al. (2003, *J. Neurosci.* 23:11628, "How spike generation
mechanisms determine the neuronal response to fluctuating inputs"; Gerstner et al. 2014,
*Neuronal Dynamics*, ch. 5.2), with voltages in mV and times in ms:

.. math::

    \tau \frac{dV}{dt} = E_L - V + \Delta_T\, e^{(V - V_T)/\Delta_T} + \mu(t)
        + \sigma \sqrt{2 \tau}\, \xi(t),

the membrane equation :math:`C\, dV/dt = g_L (E_L - V) + g_L \Delta_T e^{(V - V_T)/\Delta_T} + I(t)
+ \dots` divided by the leak conductance :math:`g_L`: :math:`\tau = C / g_L`, the drive
:math:`\mu(t) = R I(t)` with :math:`R = 1 / g_L` is in mV, and :math:`\xi` is white noise, scaled
so that :math:`\sigma` is the standard deviation of the free (subthreshold, leaky) membrane
potential. When V reaches the cutoff :math:`V_{cut}` a spike is recorded and V is reset to
:math:`V_{reset}` and held there for the refractory period :math:`t_{ref}`. As
:math:`\Delta_T \to 0` the exponential term vanishes below :math:`V_T` and the neuron becomes the
leaky integrate-and-fire neuron with threshold :math:`V_T`; with :math:`\sigma = 0` and a
constant drive it fires with the period :math:`t_{ref} + \tau \ln\frac{E_L + \mu - V_{reset}}
{E_L + \mu - V_T}` (:func:`lif_firing_rate`), which the tests check the integrator against.

The 5 free parameters (:data:`PARAMETER_NAMES`) are :math:`\tau, E_L, \Delta_T, V_T, \sigma`;
the :class:`Protocol` fixes the rest (a 300 ms trial at dt = 0.1 ms, a 25 mV step from 50 ms on,
:math:`V_{reset} = -70` mV, :math:`V_{cut} = 0` mV, :math:`t_{ref} = 2` ms). :func:`simulate` integrates
many parameter sets at once (vectorized Euler-Maruyama over the batch, a Python loop over time
steps; a fused kernel did not pay at this size); :func:`spike_features` reads the spike count,
first-spike latency and the mean and CV of the inter-spike intervals during the step (NaN where
undefined), and :func:`observation` makes them finite for the model. The Pyro model
(:func:`integrate_and_fire_model`) draws the parameters and ``num_trials`` iid trials under
``pyro.plate("trials", num_trials)``; :func:`variable_trials_model` simulates a random number of
trials, padded with NaN (:func:`pad_trials`), to train one NPE guide for any number of trials.
"""

from .dynamics import DEFAULT_PROTOCOL, Protocol, lif_firing_rate, simulate
from .features import FEATURE_NAMES, observation, spike_features
from .model import (
    PARAMETER_NAMES,
    PARAMETER_UNITS,
    integrate_and_fire_model,
    integrate_and_fire_prior,
    integrate_and_fire_simulator,
    pad_trials,
    variable_trials_model,
)

__all__ = [
    "DEFAULT_PROTOCOL",
    "FEATURE_NAMES",
    "PARAMETER_NAMES",
    "PARAMETER_UNITS",
    "Protocol",
    "integrate_and_fire_model",
    "integrate_and_fire_prior",
    "integrate_and_fire_simulator",
    "lif_firing_rate",
    "observation",
    "pad_trials",
    "simulate",
    "spike_features",
    "variable_trials_model",
]
