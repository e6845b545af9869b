"""Reference trajectories: inside joint limits, exact derivatives, reproducible, letters."""

import importlib.util

import numpy as np
import pytest

from delan.errors import DataError
from delan.systems import make_system
from delan.trajectories import (
    LETTERS,
    character_trajectories,
    fourier_trajectories,
    letter_path,
    make_trajectories,
    spline_trajectories,
)

HAS_PIN = importlib.util.find_spec("pinocchio") is not None
SYSTEMS = ["pendulum", "two-link", "cartpole", "furuta", "n-link"] + (["panda"] if HAS_PIN else [])


def check_derivatives(ref, duration, tol=2e-5):
    """qd, qdd agree with central differences of q, qd (fine grid)."""
    h = 1e-5
    t = np.linspace(0.05, duration - 0.05, 50)
    q, qd, qdd = ref(t)
    qp, qdp, _ = ref(t + h)
    qm, qdm, _ = ref(t - h)
    scale_v, scale_a = max(1.0, np.abs(qd).max()), max(1.0, np.abs(qdd).max())
    np.testing.assert_allclose((qp - qm) / (2 * h) / scale_v, qd / scale_v, atol=tol)
    np.testing.assert_allclose((qdp - qdm) / (2 * h) / scale_a, qdd / scale_a, atol=tol)


@pytest.mark.parametrize("name", SYSTEMS)
@pytest.mark.parametrize("maker", [fourier_trajectories, spline_trajectories])
def test_within_limits_and_exact_derivatives(name, maker):
    s = make_system(name)
    refs = maker(s, 3, 4.0, np.random.default_rng(0))
    t = np.linspace(0, 4.0, 2001)
    for ref in refs:
        q, qd, qdd = ref(t)
        assert q.shape == qd.shape == qdd.shape == (2001, s.n_dof)
        assert np.all(q >= s.q_min) and np.all(q <= s.q_max)
        assert np.all(np.abs(qd) <= s.qd_max)
        check_derivatives(ref, 4.0)


def test_splines_start_and_end_at_rest():
    s = make_system("two-link")
    for ref in spline_trajectories(s, 2, 3.0, np.random.default_rng(1)):
        _, qd, _ = ref(np.array([0.0, 3.0]))
        np.testing.assert_allclose(qd, 0, atol=1e-12)


def test_seed_reproduces_and_differs():
    s = make_system("n-link", n_dof=4)
    t = np.linspace(0, 3, 301)
    for maker in (fourier_trajectories, spline_trajectories):
        a = maker(s, 2, 3.0, np.random.default_rng(7))[1](t)
        b = maker(s, 2, 3.0, np.random.default_rng(7))[1](t)
        c = maker(s, 2, 3.0, np.random.default_rng(8))[1](t)
        for x, y in zip(a, b):
            assert np.array_equal(x, y)
        assert not np.allclose(a[0], c[0])


def test_characters_write_the_letters():
    s = make_system("two-link")
    refs = character_trajectories(s)
    assert len(refs) == len(LETTERS) >= 20
    assert [r.name for r in refs] == sorted(LETTERS)
    t = np.linspace(0, 2.0, 401)
    for ref in refs:
        q, qd, qdd = ref(t)
        # forward kinematics of the joint trajectory traces the letter's pen path
        p = s.forward_kinematics(q)
        np.testing.assert_allclose(p, ref.path(ref_s(t, 2.0)), atol=1e-12)
        # the pen path runs through the glyph's via points, scaled to 0.3 reach
        via = letter_path(ref.name)
        np.testing.assert_allclose(p[-1] - p[0], (via[-1] - via[0]) * 0.3, atol=1e-12)
        np.testing.assert_allclose(qd[[0, -1]], 0, atol=1e-12)  # rest to rest
        np.testing.assert_allclose(qdd[[0, -1]], 0, atol=1e-9)
        check_derivatives(ref, 2.0, tol=1e-4)


def ref_s(t, T):
    tau = t / T
    return tau**3 * (10 - 15 * tau + 6 * tau**2)


def test_characters_only_for_two_link_and_known_letters():
    with pytest.raises(DataError, match="two-link"):
        character_trajectories(make_system("cartpole"))
    with pytest.raises(DataError, match="no glyph"):
        character_trajectories(make_system("two-link"), ["a", "!"])
    with pytest.raises(DataError, match="asked for 99"):
        make_trajectories(make_system("two-link"), "characters", 99, 2.0, np.random.default_rng(0))
    with pytest.raises(DataError, match="valid kinds"):
        make_trajectories(make_system("two-link"), "zigzag", 1, 2.0, np.random.default_rng(0))
