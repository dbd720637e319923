"""Derive the beat-averaging coefficients of ``MeanFlowCirculation`` from the pulsatile model.

The beat-averaged circulation replaces each ventricle by a pump whose stroke volume is
``eta P_fill / E_min - kappa P_eject / E_max``. This command runs the pulsatile
``ClosedLoopCirculation`` to its periodic steady state at its default parameters, resolves
one beat finely, and prints eta and kappa for both ventricles, the pulse-pressure factor and
the systolic fraction, with the resting haemodynamics they come from. The defaults of
``MeanFlowCirculation`` are these numbers (rounded to three digits).

    python -m experiments.cardiovascular.derive_mean_flow_coefficients
"""

from __future__ import annotations

import argparse

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import vht  # noqa: E402
from physiology_models.cardiovascular import ClosedLoopCirculation  # noqa: E402


def derive(circulation: ClosedLoopCirculation | None = None) -> dict[str, float]:
    """The coefficients and the resting beat's haemodynamics."""
    circulation = ClosedLoopCirculation() if circulation is None else circulation
    twin = vht.Twin({"c": circulation})
    steady = vht.steady_state(twin)
    beat = jnp.linspace(0.0, float(steady.period), 4001)
    solution = vht.simulate(twin, y0=steady.y, ts=beat, rtol=1e-10, atol=1e-10)

    def mean_over_beat(name):
        return np.asarray(solution[f"c.{name}"])[:-1]

    lv, rv = mean_over_beat("left_ventricle"), mean_over_beat("right_ventricle")
    arterial, venous = mean_over_beat("arterial_pressure"), mean_over_beat(
        "central_venous_pressure")
    pulmonary_arterial = mean_over_beat("pulmonary_arterial_pressure")
    pulmonary_venous = mean_over_beat("pulmonary_venous_pressure")
    c = {k: float(v) for k, v in circulation.parameter_values().items()}
    stroke = lv.max() - lv.min()
    pulse = arterial.max() - arterial.min()
    return {
        "lv_filling_efficiency": c["lv_elastance_min"] * (lv.max() - c["lv_unstressed_volume"])
        / pulmonary_venous.mean(),
        "lv_ejection_ratio": c["lv_elastance_max"] * (lv.min() - c["lv_unstressed_volume"])
        / arterial.mean(),
        "rv_filling_efficiency": c["rv_elastance_min"] * (rv.max() - c["rv_unstressed_volume"])
        / venous.mean(),
        "rv_ejection_ratio": c["rv_elastance_max"] * (rv.min() - c["rv_unstressed_volume"])
        / pulmonary_arterial.mean(),
        "pulse_pressure_factor": pulse / (stroke / c["systemic_arterial_compliance"]),
        "systolic_fraction": (arterial.max() - arterial.mean()) / pulse,
        "lv_mean_volume_fraction": (lv.mean() - lv.min()) / (lv.max() - lv.min()),
        "rv_mean_volume_fraction": (rv.mean() - rv.min()) / (rv.max() - rv.min()),
        "mean_arterial_pressure_mmHg": arterial.mean(),
        "cardiac_output_L_per_min": stroke * c["heart_rate"] / 1000.0,
        "central_venous_pressure_mmHg": venous.mean(),
    }


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    for name, value in derive().items():
        print(f"{name:<30}{value:10.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
