"""Chapter 10's statistics (``liif_core.stats``) against printed tables and hand-made data."""
from __future__ import annotations

import numpy as np
import pytest

from liif_core.stats import chi2_cdf, paired_interval, samples_needed, t_quantile


@pytest.mark.parametrize('p, nu, table', [(0.975, 1, 12.7062), (0.975, 2, 4.3027),
                                          (0.975, 10, 2.2281), (0.95, 1, 6.3138),
                                          (0.95, 30, 1.6973), (0.5, 4, 0.0)])
def test_t_quantile_matches_the_printed_table(p, nu, table):
    assert t_quantile(p, nu) == pytest.approx(table, abs=1e-4)


def test_t_quantile_between_integer_degrees_of_freedom():
    assert t_quantile(0.975, 2) > t_quantile(0.975, 2.5) > t_quantile(0.975, 3)
    with pytest.raises(ValueError, match='0.5 <= p < 1'):
        t_quantile(0.2, 3)


@pytest.mark.parametrize('q, k, table', [(5.0239, 1, 0.975), (0.000982, 1, 0.025),
                                         (5.9915, 2, 0.95), (7.8147, 3, 0.95),
                                         (0.2158, 3, 0.025), (18.307, 10, 0.95)])
def test_chi2_cdf_matches_the_printed_table(q, k, table):
    assert chi2_cdf(q, k) == pytest.approx(table, abs=2e-4)


def test_paired_interval_parts():
    rng = np.random.default_rng(0)
    photo_effect = rng.normal(0, 0.2, size=(1, 11, 1))
    paired = np.broadcast_to(photo_effect, (2, 11, 3)) + np.array([0.1, 0.3])[:, None, None]
    got = paired_interval(paired)
    assert got.mean == pytest.approx(photo_effect.mean() + 0.2)
    assert got.se_seed == pytest.approx(0.1)  # |0.1 - 0.3| / 2
    se_photo = photo_effect[0, :, 0].std(ddof=1) / np.sqrt(11)
    assert got.se_photo == pytest.approx(se_photo)
    assert got.photo_half == pytest.approx(2.2281 * se_photo, rel=1e-4)
    a, b = se_photo ** 2, 0.01
    dof = (a + b) ** 2 / (a ** 2 / 10 + b ** 2 / 1)
    assert got.dof == pytest.approx(dof)
    assert got.half == pytest.approx(t_quantile(0.975, dof) * np.sqrt(a + b))
    assert got.resolved.tolist() == list(np.abs(got.mean) > got.half)


def test_paired_interval_without_seed_noise_is_the_photos_interval():
    paired = np.tile(np.linspace(-1, 2, 11)[None, :, None], (2, 1, 1))
    got = paired_interval(paired)
    assert got.se_seed == pytest.approx(0) and got.dof == pytest.approx(10)
    assert got.half == pytest.approx(got.photo_half)
    with pytest.raises(ValueError, match='seeds >= 2'):
        paired_interval(paired[:1])


def test_samples_needed():
    # 2 (2.80 * 0.24 / 0.14)^2 = 46.08 and 2 (2.80 * 0.01 / 0.14)^2 = 0.08, rounded up
    assert samples_needed(np.array([0.24, 0.01]), 0.14).tolist() == [47, 1]
