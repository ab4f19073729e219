"""The paper's reported PSNR (dB), to print beside measured numbers, never in place of them.

Values are as printed in the CVPR 2021 paper (Chen, Liu and Wang, "Learning Continuous Image
Representation with Local Implicit Image Function"). Every table here is labelled "paper" wherever
the book or ``liif test`` shows it. The paper scores DIV2K-val (100 images, RGB, shave s + 6) and
the benchmark sets (Y channel, shave s); numbers on other images are not comparable with these.

Book: chapter 9, "Benchmark", and chapter 10, "Ablations".
"""
from __future__ import annotations

# Table 1, DIV2K validation set. x2-x4 are in the training distribution, x6-x30 outside it.
# The methods marked with a sharp in the paper (MetaSR) are the authors' own implementation.
TABLE1_SCALES = (2, 3, 4, 6, 12, 18, 24, 30)
TABLE1: dict[str, tuple[float | None, ...]] = {
    'Bicubic': (31.01, 28.22, 26.66, 24.82, 22.27, 21.00, 20.19, 19.59),
    'EDSR-baseline': (34.55, 30.90, 28.94, None, None, None, None, None),
    'EDSR-baseline-MetaSR': (34.64, 30.93, 28.92, 26.61, 23.55, 22.03, 21.06, 20.37),
    'EDSR-baseline-LIIF': (34.67, 30.96, 29.00, 26.75, 23.71, 22.17, 21.18, 20.48),
    'RDN-MetaSR': (35.00, 31.27, 29.25, 26.88, 23.73, 22.18, 21.17, 20.47),
    'RDN-LIIF': (34.99, 31.26, 29.27, 26.99, 23.89, 22.34, 21.31, 20.59),
}

# Table 2, benchmark sets with the RDN encoder (Y channel). Cells the paper's text does not give
# unambiguously are left out (None).
TABLE2_SCALES = (2, 3, 4, 6, 8)
TABLE2: dict[str, dict[str, tuple[float | None, ...]]] = {
    'Set5': {'RDN': (38.24, None, None, None, None),
             'RDN-MetaSR': (38.22, 34.63, 32.38, 29.04, 26.96),
             'RDN-LIIF': (38.17, 34.68, 32.50, 29.15, 27.14)},
    'Set14': {'RDN': (34.01, 30.57, 28.81, None, None),
              'RDN-MetaSR': (33.98, 30.54, 28.78, 26.51, 24.97),
              'RDN-LIIF': (33.97, 30.53, 28.80, 26.64, 25.15)},
    'B100': {'RDN': (32.34, 29.26, 27.72, None, None),
             'RDN-MetaSR': (32.33, 29.26, 27.71, 25.90, 24.83),
             'RDN-LIIF': (32.32, 29.26, 27.74, 25.98, 24.91)},
    'Urban100': {'RDN': (32.89, 28.80, 26.61, None, None),
                 'RDN-MetaSR': (32.92, 28.82, 26.55, 23.99, 22.59),
                 'RDN-LIIF': (32.87, 28.82, 26.68, 24.20, 22.79)},
}

# Table 3, ablation of EDSR-baseline-LIIF on DIV2K-val: -c no cell decoding, -u no feature
# unfolding, -e no local ensemble, -d a decoder of depth 3 (hidden [256, 256]).
TABLE3_SCALES = TABLE1_SCALES
TABLE3: dict[str, tuple[float, ...]] = {
    'LIIF': (34.67, 30.96, 29.00, 26.75, 23.71, 22.17, 21.18, 20.48),
    'LIIF(-c)': (34.53, 30.92, 28.97, 26.73, 23.72, 22.19, 21.19, 20.51),
    'LIIF(-u)': (34.64, 30.94, 28.98, 26.73, 23.69, 22.16, 21.17, 20.47),
    'LIIF(-e)': (34.63, 30.95, 28.97, 26.72, 23.66, 22.13, 21.14, 20.45),
    'LIIF(-d)': (34.65, 30.94, 28.98, 26.71, 23.64, 22.10, 21.12, 20.42),
}


def paper_psnr(method: str, scale: float, table: str = 'table1',
               dataset: str | None = None) -> float | None:
    """The paper's PSNR for ``method`` at ``scale`` in Table 1, 2 or 3; None where it gives none
    (e.g. a non-integer scale, or a fixed-scale model outside x2-x4). Table 2 needs the
    benchmark ``dataset`` ('Set5', 'Set14', 'B100' or 'Urban100')."""
    if table == 'table2':
        if dataset not in TABLE2:
            raise ValueError(f'table2 needs a dataset, one of {", ".join(TABLE2)}; got {dataset!r}')
        rows, scales = TABLE2[dataset], TABLE2_SCALES
    else:
        rows, scales = {'table1': (TABLE1, TABLE1_SCALES), 'table3': (TABLE3, TABLE3_SCALES)}[table]
    if method not in rows:
        raise ValueError(f'{table} has no row {method!r}; rows: {", ".join(rows)}')
    return rows[method][scales.index(scale)] if scale in scales else None
