"""js0_log (claim C9's non-saturating JS0) against references: a quadrature of the Jensen-Shannon
divergence between two Gaussian mixtures, the ceiling sqrt(ln 2) for disjoint blocks, 0 for equal
ones, invariance under lambda -> c lambda^p, and Lin's bound JS <= J/4 for shifted copies."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import heterosim as hs
from heterosim import measures
from heterosim.claims.common import js0_exact


def _mixture(nodes, sigma):
    return lambda u: np.mean([stats.norm.pdf(u, m, sigma) for m in nodes], axis=0)


def test_js_divergence_matches_quadrature_of_two_gaussian_mixtures():
    a, b = [1.0, 10.0], [2.0, 10.0]                       # span 1 decade: sigma = 0.05 decades
    sigma = measures.JS0_LOG_REL_BANDWIDTH * 1.0
    p, q = _mixture(np.log10(a), sigma), _mixture(np.log10(b), sigma)

    def integrand(u):
        pu, qu = p(u), q(u)
        m = (pu + qu) / 2
        return 0.5 * (pu * np.log(pu / m) if pu > 0 else 0.0) + 0.5 * (qu * np.log(qu / m) if qu > 0 else 0.0)
    ref = integrate.quad(integrand, -1.0, 2.0, points=[0.0, math.log10(2.0), 1.0], limit=400)[0]
    got, mat = measures.js0_log([a, b], kind="divergence")
    assert got == pytest.approx(ref, rel=2e-3)
    assert mat.shape == (2, 2) and float(mat[0, 1]) == pytest.approx(got)


def test_ceiling_for_disjoint_blocks_and_zero_for_equal_ones():
    far = measures.js0_log([[1.0, 1.1], [1e6, 1.1e6]])[0]          # 20 sigma apart
    assert far == pytest.approx(math.sqrt(math.log(2.0)), abs=1e-9)
    same = measures.js0_log([[1.0, 3.0, 9.0], [9.0, 1.0, 3.0]])[0]
    assert same == pytest.approx(0.0, abs=1e-12)
    assert measures.js0_log([[2.0, 2.0], [2.0]])[0] == pytest.approx(0.0, abs=1e-12)   # one eigenvalue: span 0


def test_invariant_under_powers_and_scalings_of_the_spectrum():
    p = hs.problems.make("zhang_case", case=1, seed=3)
    base = measures.js0_log(p.block_spectra)[0]
    moved = measures.js0_log([7.0 * s ** 0.5 for s in p.block_spectra])[0]
    assert moved == pytest.approx(base, rel=1e-6)


def test_interleaved_log_spaced_blocks_obey_lins_bound_and_do_not_saturate():
    """Zhang's case 4: blocks are shifted copies of each other on the log axis (by k spacings
    Delta = span / 99); Lin (1991): JS <= (KL(p||q) + KL(q||p)) / 4, and for equal mixtures shifted
    by delta that is at most delta^2 / (4 sigma^2) per pair (convexity of KL)."""
    p4 = hs.problems.make("zhang_case", case=4, seed=0)
    got = measures.js0_log(p4.block_spectra)[0]
    ratio = (1.0 / 99) / measures.JS0_LOG_REL_BANDWIDTH     # Delta / sigma
    bound = np.mean([k * ratio / 2 for k in (1, 1, 1, 2, 2, 3)])    # sqrt(delta^2 / (4 sigma^2)) per pair
    assert got <= bound
    assert js0_exact(p4) > 0.65                                    # the saturating JS0 on the same case
    p3 = hs.problems.make("zhang_case", case=3, seed=0)
    assert measures.js0_log(p3.block_spectra)[0] < math.sqrt(math.log(2.0)) - 0.03   # below the ceiling


def test_rejects_what_it_cannot_take():
    with pytest.raises(ValueError, match="at least 2 blocks"):
        measures.js0_log([[1.0, 2.0]])
    with pytest.raises(ValueError, match="> 0"):
        measures.js0_log([[1.0, 0.0], [1.0]])
    with pytest.raises(ValueError, match="rel_bandwidth"):
        measures.js0_log([[1.0], [2.0]], rel_bandwidth=0.0)
    assert "js0_log" in measures.__all__ and torch.is_tensor(measures.js0_log([[1.0], [2.0]])[1])
