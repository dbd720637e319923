"""The unrolled small-matrix linear algebra of FOCE fits against jnp.linalg (values and
derivatives), for every unrolled size and the fallback above it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from calibration import _small_linalg as small


@pytest.fixture(params=[1, 2, 3, 4, small.UNROLL_UP_TO + 1])
def matrices(request):
    q = request.param
    rng = np.random.default_rng(q)
    x = rng.normal(size=(5, q, q))
    a = jnp.asarray(x @ x.transpose(0, 2, 1) + q * np.eye(q))  # positive definite
    return a, jnp.asarray(rng.normal(size=(5, q))), jnp.asarray(rng.normal(size=(5, q, 3)))


def test_factorisations_and_solves_match_jnp_linalg(matrices):
    a, b, many = matrices
    lower = jnp.linalg.cholesky(a)
    cholesky, solve_lower, inverse, log_det, solve, solve_many = jax.jit(lambda: (
        small.cholesky(a), small.solve_lower(lower, b), small.inverse_from_cholesky(lower),
        small.log_det_spd(a), small.solve(a, b), small.solve(a, many)))()
    np.testing.assert_allclose(cholesky, lower, atol=1e-13)
    np.testing.assert_allclose(
        solve_lower,
        jax.vmap(lambda m, v: jax.scipy.linalg.solve_triangular(m, v, lower=True))(lower, b),
        atol=1e-13)
    np.testing.assert_allclose(inverse, jnp.linalg.inv(a), atol=1e-13)
    np.testing.assert_allclose(log_det, jnp.linalg.slogdet(a)[1], atol=1e-13)
    np.testing.assert_allclose(solve, jnp.linalg.solve(a, b[..., None])[..., 0], atol=1e-13)
    np.testing.assert_allclose(solve_many, jnp.linalg.solve(a, many), atol=1e-13)


def test_derivatives_match_jnp_linalg(matrices):
    """Forward and reverse mode; the log-determinant's along any tangent, not only symmetric
    ones (it reads the symmetric part, as jnp.linalg's reads the whole matrix)."""
    a, b, _ = matrices
    a0, b0 = a[0], b[0]

    def log_dets(m):  # one compiled program each (eager unrolled code dispatches per entry)
        return (jax.jacfwd(small.log_det_spd)(m), jax.grad(small.log_det_spd)(m),
                jax.jacfwd(lambda x: jnp.linalg.slogdet(x)[1])(m))

    forward, reverse, expected = jax.jit(log_dets)(a0)
    np.testing.assert_allclose(forward, expected, atol=1e-12)
    np.testing.assert_allclose(reverse, expected, atol=1e-12)
    def solve_jacobians(m, v):
        return [(jax.jacfwd(small.solve, k)(m, v), jax.jacfwd(jnp.linalg.solve, k)(m, v))
                for k in (0, 1)]

    for got, want in jax.jit(solve_jacobians)(a0, b0):
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_not_positive_definite_gives_nan():
    indefinite = jnp.asarray([[1.0, 2.0], [2.0, 1.0]])
    assert not np.all(np.isfinite(small.cholesky(indefinite)))
    assert np.isnan(small.log_det_spd(indefinite))
    # Gaussian elimination still solves a symmetric indefinite system with nonzero minors
    np.testing.assert_allclose(small.solve(indefinite, jnp.asarray([1.0, 0.0])),
                               jnp.linalg.solve(indefinite, jnp.asarray([1.0, 0.0])), atol=1e-14)


def test_definiteness_and_gershgorin_bounds_match_the_eigenvalues():
    rng = np.random.default_rng(7)
    for q in (1, 2, 3, 4):
        x = rng.normal(size=(50, q, q))
        a = jnp.asarray(x + x.transpose(0, 2, 1))  # symmetric, definite or not
        eigenvalues = np.linalg.eigvalsh(np.asarray(a))
        lowest, scale = jax.jit(small.gershgorin_bounds)(a)
        assert np.all(np.asarray(lowest) <= eigenvalues[:, 0] + 1e-12)
        assert np.all(np.asarray(scale) >= np.abs(eigenvalues).max(axis=1) - 1e-12)
        np.testing.assert_array_equal(jax.jit(small.positive_definite)(a),
                                      eigenvalues[:, 0] > 0)
        if q <= 2:  # both kinds occur among the samples
            assert 0 < np.sum(eigenvalues[:, 0] > 0) < len(a)
