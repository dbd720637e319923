"""Calibration of twins to patient data: parameters and priors, likelihoods, individual,
cohort and population fits, uncertainty.

This package is part of the ``vht`` distribution; its fitting tools are built on the twin,
scenario and simulation API of ``vht`` (see the calibration issue and docs/).
"""
