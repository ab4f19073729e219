import pytest
import torch

from liif_core import make_cell, make_coord, to_pixel_samples


def official_recipe(n, v0=-1.0, v1=1.0):
    """The official float32 recipe written independently: fl32(fl32(2r) * i) + fl32(v0 + r)."""
    r = (v1 - v0) / (2 * n)
    two_r = torch.tensor(2 * r, dtype=torch.float32)
    start = torch.tensor(v0 + r, dtype=torch.float32)
    return torch.stack([two_r * torch.tensor(float(i)) + start for i in range(n)])


@pytest.mark.parametrize('n', [1, 2, 3, 7, 48, 97, 300, 1023])
@pytest.mark.parametrize('rng', [(-1.0, 1.0), (0.0, 1.0), (-0.3, 2.5)])
def test_axis_is_bit_exact(n, rng):
    got = make_coord((n,), ranges=[rng])[:, 0]
    assert torch.equal(got, official_recipe(n, *rng))


def test_pixel_centres_and_layout():
    coord = make_coord((4, 2), flatten=False)
    assert coord.shape == (4, 2, 2) and coord.dtype == torch.float32
    assert coord[:, 0, 0].tolist() == [-0.75, -0.25, 0.25, 0.75]  # component 0 is the row
    assert coord[0, :, 1].tolist() == [-0.5, 0.5]
    flat = make_coord((4, 2))
    assert torch.equal(flat, coord.view(-1, 2))  # row-major: flat index i * W + j


def test_to_pixel_samples_row_major():
    img = torch.arange(2 * 3 * 5, dtype=torch.float32).view(2, 3, 5)
    coord, values = to_pixel_samples(img)
    assert coord.shape == (15, 2) and values.shape == (15, 2)
    assert torch.equal(values[7], img[:, 1, 2])  # pixel (1, 2) is sample 1 * 5 + 2
    assert torch.equal(coord, make_coord((3, 5)))


def test_make_cell():
    coord = make_coord((10, 4)).unsqueeze(0)
    cell = make_cell(coord, (10, 4))
    assert cell.shape == coord.shape
    assert torch.all(cell[..., 0] == torch.tensor(2 / 10)) and torch.all(cell[..., 1] == 0.5)
