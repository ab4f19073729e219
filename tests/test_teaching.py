"""What the chapters import: their set-up, the training chapters' step count, and the runs of
the ablation chapters (``liif_core.teaching``, ``liif_core.ablation``)."""
from __future__ import annotations

import random
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from liif_core import ablation, paper
from liif_core.configs import load_config
from liif_core.figures import STYLE
from liif_core.teaching import (DETAIL_COLS, DETAIL_ROWS, edge_strength, iterations_per_epoch,
                                setup)

ROOT = Path(__file__).resolve().parents[1]


def test_setup_seeds_every_generator_and_sets_the_style():
    threads = torch.get_num_threads()
    try:
        setup(threads=1, seed=3)
        draws = random.random(), np.random.rand(), torch.rand(1).item()
        assert torch.get_num_threads() == 1
        assert matplotlib.rcParams['font.size'] == STYLE['font.size']
        setup(threads=1, seed=3)
        assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws
    finally:
        torch.set_num_threads(threads)
        matplotlib.rcdefaults()


def test_the_detail_region_is_240_pixels_square():
    assert [s.stop - s.start for s in (DETAIL_ROWS, DETAIL_COLS)] == [240, 240]


def test_iterations_per_epoch_counts_as_the_loader(tmp_path):
    from PIL import Image

    folder = tmp_path / 'standin' / 'train'  # where the config's ./load/standin/train points
    folder.mkdir(parents=True)
    for i in range(5):
        Image.new('RGB', (64, 64)).save(folder / f'{i}.png')
    config = load_config('cpu/train_edsr-baseline-liif-chapter')
    section = config['train_dataset']
    section['dataset']['args']['repeat'] = 3
    section['batch_size'] = 4
    assert iterations_per_epoch(config, tmp_path) == 4  # 5 photos x 3 = 15 examples / 4


def test_the_shipped_ablation_runs_load():
    logs, sweeps = ablation.load_runs(ROOT / 'book' / 'results' / 'ablation')
    assert set(logs) == set(sweeps) == set(ablation.VARIANTS)
    for v in ablation.VARIANTS:
        assert len(logs[v]) == len(sweeps[v]) == len(ablation.SEEDS)
        for seed, (rows, meta) in zip(ablation.SEEDS, sweeps[v]):
            assert [r.scale for r in rows] == list(paper.TABLE3_SCALES)
            assert f'{v}-seed{seed}' in meta['weights'], meta['weights']
            assert len(logs[v][seed]) == 4  # epochs
    assert set(ablation.paper_rows()) == set(ablation.VARIANTS)
    assert set(ablation.variant_configs()) == set(ablation.VARIANTS)


def test_edge_strength_counts_the_steps_between_neighbours():
    flat = torch.full((4, 5, 3), 0.3)
    assert edge_strength(flat) == 0
    step = torch.zeros(4, 5, 3)
    step[:, 3:, 0] = 1  # one red edge between columns 2 and 3, on every row
    # 4 of the 4 * 4 * 3 horizontal neighbour differences are 1; no vertical one is.
    assert edge_strength(step) == pytest.approx(4 / 48)
    assert edge_strength(step.transpose(0, 1)) == pytest.approx(4 / 48)
