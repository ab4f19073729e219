"""The README's ablation table, recomputed from the cached per-image results.

Chapter 10 derives the table (paired differences to LIIF with 95 % intervals over photos and
seeds) and checks its prose; the README copies the numbers, and this test keeps the copy true.
"""
import re
from pathlib import Path

import numpy as np

from liif_core.report import read_json

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / 'book' / 'results' / 'ablation'
LABELS = {'liif-c': 'LIIF(-c)', 'liif-u': 'LIIF(-u)', 'liif-e': 'LIIF(-e)',
          'liif-d': 'LIIF(-d)', 'metasr': 'MetaSR'}


def t_quantile(p, nu):
    """Student's t quantile for p >= 0.5 and real nu > 0 (the chapter's: x = tan(theta),
    midpoint rule), since the Welch-Satterthwaite nu is not an integer."""
    edges = np.linspace(0, np.pi / 2, 100_001)
    theta = (edges[:-1] + edges[1:]) / 2
    density = (1 + np.tan(theta) ** 2 / nu) ** (-(nu + 1) / 2) / np.cos(theta) ** 2
    cdf = 0.5 + 0.5 * np.cumsum(density) / density.sum()
    return np.tan(np.interp(p, cdf, edges[1:]))


def per_image(variant):
    """(seeds, photos, scales) PSNR."""
    return np.array([[r.per_image for r in read_json(RESULTS / f'{variant}-seed{s}.json')[0]]
                     for s in (0, 1)]).transpose(0, 2, 1)


def readme_rows():
    text = (ROOT / 'README.md').read_text()
    section = text.split('## Ablations (chapter 10)')[1].split('\n## ')[0]
    return {line.split('|')[1].strip(): [c.strip() for c in line.split('|')[2:-1]]
            for line in section.splitlines() if line.startswith('| ')}


def test_t_quantile_matches_tables():
    assert np.allclose([t_quantile(0.975, nu) for nu in (1, 2, 10)],
                       [12.7062, 4.3027, 2.2281], atol=1e-4)


def test_readme_differences_and_intervals():
    rows = readme_rows()
    liif = per_image('liif')
    for variant, label in LABELS.items():
        paired = per_image(variant) - liif
        n_photos = paired.shape[1]
        by_seed = paired.mean(1)
        se_photo2 = paired.mean(0).var(0, ddof=1) / n_photos
        se_seed2 = ((by_seed[0] - by_seed[1]) / 2) ** 2
        dof = (se_photo2 + se_seed2) ** 2 / (se_photo2 ** 2 / (n_photos - 1) + se_seed2 ** 2)
        half = np.array([t_quantile(0.975, nu) for nu in dof]) * np.sqrt(se_photo2 + se_seed2)
        mean = by_seed.mean(0)
        want = [f'**{m:+.2f} ±{h:.2f}**' if abs(m) > h else f'{m:+.2f} ±{h:.2f}'
                for m, h in zip(mean, half)]
        assert rows[f'{label} - LIIF'] == want, label


def test_readme_seed_gaps_at_x2():
    text = ' '.join((ROOT / 'README.md').read_text().split())
    found = re.search(r"own two seeds differ at x2 by ([\d.]+) dB \(LIIF\), ([\d.]+) \(-c\), "
                      r"([\d.]+) \(-u\), ([\d.]+) \(-e\), ([\d.]+) \(-d\) and ([\d.]+) \(MetaSR\)",
                      text)
    assert found
    gaps = [abs(np.diff(per_image(v)[:, :, 0].mean(1)))[0] for v in ['liif', *LABELS]]
    assert list(found.groups()) == [f'{g:.2f}' for g in gaps]
