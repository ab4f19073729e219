"""The statistics of chapter 10 ("Ablations"): how far a paired PSNR difference between two
models can be trusted when it was measured with a few seeds on a few photos.

A difference is measured on every (seed, photo, scale); the noise in its mean has two parts,
kept apart because they are measured with very different precision:

* the photos: the spread of the per-photo differences (each averaged over the seeds), with
  ``photos - 1`` degrees of freedom;
* the seeds: the spread of the per-seed differences (each averaged over the photos), with
  ``seeds - 1`` degrees of freedom, one for two seeds.

``paired_interval`` combines them the textbook way (the variances add; Student's t with the
Welch-Satterthwaite degrees of freedom). numpy has no t or chi-square distribution, and the
Welch-Satterthwaite degrees of freedom are not integers, so both are computed here.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import erf, exp, gamma, sqrt

import numpy as np

Z_POWER = 1.96 + 0.84  # a two-sided 5 % test that detects a true difference 80 % of the time


def t_quantile(p: float, nu: float) -> float:
    """Student's t quantile for ``0.5 <= p < 1`` and any real ``nu > 0``.

    With x = tan(theta) the density integrates over the finite range [0, pi/2) (midpoint
    rule, 100,000 steps: the tabulated points to four decimals).
    """
    if not (0.5 <= p < 1 and nu > 0):
        raise ValueError(f't_quantile needs 0.5 <= p < 1 and nu > 0, not p={p}, nu={nu}')
    edges = np.linspace(0, np.pi / 2, 100_001)
    theta = (edges[:-1] + edges[1:]) / 2
    density = (1 + np.tan(theta) ** 2 / nu) ** (-(nu + 1) / 2) / np.cos(theta) ** 2
    cdf = 0.5 + 0.5 * np.cumsum(density) / density.sum()
    return float(np.tan(np.interp(p, cdf, edges[1:])))


def chi2_cdf(q: float, k: int) -> float:
    """P(X <= q) for X chi-square with ``k`` (a positive integer) degrees of freedom.

    Closed forms for k = 1 and 2, and P(k + 2) = P(k) - (q/2)^(k/2) e^(-q/2) / Gamma(k/2 + 1).
    """
    if k < 1 or int(k) != k:
        raise ValueError(f'chi2_cdf needs a positive integer k, not {k}')
    p = erf(sqrt(q / 2)) if k % 2 else 1 - exp(-q / 2)
    for j in range(2 - k % 2, int(k), 2):
        p -= (q / 2) ** (j / 2) * exp(-q / 2) / gamma(j / 2 + 1)
    return p


@dataclass
class PairedInterval:
    """A paired difference per scale, and the two parts of its noise (each an array over
    scales, in the unit of the differences)."""
    per_seed: np.ndarray  # (seeds, scales): each seed's mean difference over the photos
    mean: np.ndarray  # the mean over seeds and photos
    se_photo: np.ndarray  # standard error from the photos' spread
    se_seed: np.ndarray  # standard error from the seeds' spread
    dof: np.ndarray  # Welch-Satterthwaite degrees of freedom of the combined error
    half: np.ndarray  # half-width of the combined interval
    photo_half: np.ndarray  # half-width of the photos' interval alone

    @property
    def resolved(self) -> np.ndarray:
        """Where the combined interval excludes zero."""
        return np.abs(self.mean) > self.half


def paired_interval(paired: np.ndarray, level: float = 0.95) -> PairedInterval:
    """The mean of ``paired`` differences, shape (seeds, photos, scales), with its intervals
    at ``level`` over the photos alone and over photos and seeds together."""
    paired = np.asarray(paired, dtype=float)
    if paired.ndim != 3 or min(paired.shape[:2]) < 2:
        raise ValueError('paired_interval needs differences of shape (seeds >= 2, '
                         f'photos >= 2, scales), not {paired.shape}')
    seeds, photos = paired.shape[:2]
    per_seed = paired.mean(1)
    se_photo = paired.mean(0).std(0, ddof=1) / np.sqrt(photos)
    se_seed = per_seed.std(0, ddof=1) / np.sqrt(seeds)
    a, b = se_photo ** 2, se_seed ** 2
    dof = (a + b) ** 2 / (a ** 2 / (photos - 1) + b ** 2 / (seeds - 1))
    p = (1 + level) / 2
    half = np.array([t_quantile(p, nu) for nu in dof]) * np.sqrt(a + b)
    return PairedInterval(per_seed=per_seed, mean=per_seed.mean(0), se_photo=se_photo,
                          se_seed=se_seed, dof=dof, half=half,
                          photo_half=t_quantile(p, photos - 1) * se_photo)


def samples_needed(sigma: np.ndarray, delta: float, z: float = Z_POWER) -> np.ndarray:
    """How many independent draws of spread ``sigma`` resolve a true difference ``delta`` when
    they are given half of the variance that the test allows: ``ceil(2 (z sigma / delta)^2)``."""
    return np.ceil(2 * (z * np.asarray(sigma) / delta) ** 2).astype(int)
