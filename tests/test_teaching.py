import pytest
import torch

from liif_core.teaching import edge_strength


def test_edge_strength_counts_the_steps_between_neighbours():
    flat = torch.full((4, 5, 3), 0.3)
    assert edge_strength(flat) == 0
    step = torch.zeros(4, 5, 3)
    step[:, 3:, 0] = 1  # one red edge between columns 2 and 3, on every row
    # 4 of the 4 * 4 * 3 horizontal neighbour differences are 1; no vertical one is.
    assert edge_strength(step) == pytest.approx(4 / 48)
    assert edge_strength(step.transpose(0, 1)) == pytest.approx(4 / 48)
