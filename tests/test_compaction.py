"""The compacted loop of cohort fits against a plain vmapped while loop: the same result per
lane, whether the lanes finish in the first stretch, in one round, or need many rounds with
more lanes active than places."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from calibration._compaction import compacted_while_loop


def _continues(carry, data):
    x, i = carry
    return (jnp.abs(x - jnp.sqrt(data)) > 1e-12 * jnp.sqrt(data)) & (i < 60)


def _step(carry, data):
    x, i = carry
    return 0.5 * (x + data / x), i + 1  # Newton's square root: iterations grow with x0 / root


@pytest.mark.parametrize("first, capacity, chunk", [(2, 3, 3), (1, 1, 1), (40, 4, 2),
                                                    (0, 100, 5)])
def test_every_lane_ends_as_in_a_vmapped_while_loop(first, capacity, chunk):
    rng = np.random.default_rng(0)
    data = jnp.asarray(rng.uniform(0.5, 2.0, 23))
    start = (jnp.asarray(10.0 ** rng.uniform(0, 12, 23)), jnp.zeros(23, dtype=int))

    def plain(carry0, d):
        return jax.vmap(lambda c, v: jax.lax.while_loop(
            lambda c_: _continues(c_, v), lambda c_: _step(c_, v), c))(carry0, d)

    expected = jax.jit(plain)(start, data)
    got = jax.jit(lambda c, d: compacted_while_loop(
        _continues, _step, c, d, first=first, capacity=capacity, chunk=chunk))(start, data)
    iterations = np.asarray(expected[1])
    assert iterations.min() < 10 and iterations.max() > 30  # lanes finish far apart
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-15)
    np.testing.assert_allclose(got[0], np.sqrt(data), rtol=1e-12)
