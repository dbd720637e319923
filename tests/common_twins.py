"""Twins shared by the tests (built once per process so compiled programs are reused)."""

import functools

import jax.numpy as jnp

import vht
from physiology_models.cardiovascular import ClosedLoopCirculation
from physiology_models.pharmacology import OneCompartmentPK, TwoCompartmentPK


@functools.cache
def one_compartment(ka=1.2, clearance=3.0, volume=30.0, lag_time=0.0, bioavailability=1.0):
    return vht.Twin({"drug": OneCompartmentPK(ka=ka, clearance=clearance, volume=volume,
                                              lag_time=lag_time,
                                              bioavailability=bioavailability)})


@functools.cache
def two_compartment():
    return vht.Twin({"drug": TwoCompartmentPK()})


@functools.cache
def circulation(valves="smooth"):
    return vht.Twin({"circulation": ClosedLoopCirculation(valves=valves)})


@functools.cache
def circulation_steady_state(valves="smooth"):
    twin = circulation(valves)
    return twin, vht.steady_state(twin)


def one_compartment_oral_concentration(t_hours, dose, ka, clearance, volume, lag=0.0, f=1.0):
    """Analytic C(t) of the one-compartment oral model (Gibaldi and Perrier 1982)."""
    ke = clearance / volume
    tau = jnp.maximum(t_hours - lag, 0.0)
    if ka == ke:
        return f * dose * ke * tau * jnp.exp(-ke * tau) / volume
    return f * dose * ka / (volume * (ka - ke)) * (jnp.exp(-ke * tau) - jnp.exp(-ka * tau))
