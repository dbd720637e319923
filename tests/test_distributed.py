"""Collectives without MPI, and sharding a cohort over several (CPU) devices."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, **env) -> str:
    environment = {**os.environ, **env}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                            env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_collectives_are_the_identity_without_mpi():
    out = _python("""
        import jax, jax.numpy as jnp
        from vht import distributed
        x = jnp.array([1.0, 2.0])
        print(distributed.mpi_enabled(), distributed.world_size(), distributed.rank(),
              jax.jit(distributed.sum_over_ranks)(x).tolist(),
              jax.jit(distributed.broadcast_from_root)(x).tolist())
        distributed.barrier()
    """, VHT_DISABLE_MPI="1")
    assert out.split() == ["False", "1", "0", "[1.0,", "2.0]", "[1.0,", "2.0]"]


def test_cohort_sharded_over_four_devices_matches_one_device():
    out = _python("""
        import json, jax, jax.numpy as jnp, numpy as np
        jax.config.update("jax_enable_x64", True)
        import vht
        from vht import distributed
        from physiology_models.twins import oral_pk

        assert len(jax.devices()) == 4, jax.devices()
        clearances = jnp.linspace(1.0, 4.0, 8)
        cohort = jax.vmap(lambda cl: oral_pk().replace({"drug.clearance": cl}))(clearances)
        scenario = vht.Scenario([vht.OralDose("drug.depot", 320.0, 0.0)])
        run = jax.jit(jax.vmap(lambda tw: vht.simulate(tw, scenario, t1=1440.0, n_save=25).ys))
        whole = run(cohort)
        sharded = run(distributed.shard_leading_axis(cohort))
        print(json.dumps({
            "devices": len(sharded.sharding.device_set),
            "max_abs_difference": float(jnp.max(jnp.abs(sharded - whole))),
            "scale": float(jnp.max(jnp.abs(whole))),
        }))
    """, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["devices"] == 4
    assert result["max_abs_difference"] <= 1e-12 * result["scale"]


def test_shard_leading_axis_rejects_uneven_batches():
    out = _python("""
        import jax.numpy as jnp
        from vht import distributed
        try:
            distributed.shard_leading_axis(jnp.ones((6, 2)))
        except ValueError as error:
            print(error)
    """, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    assert "does not split over 4 devices" in out
