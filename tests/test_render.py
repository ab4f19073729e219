"""render: whole images and windows, any size or scale pair, bicubic through the same call."""
import pytest
import torch

from liif_core import BICUBIC, LIIF, make_cell, make_coord, render, resize_fn

TINY_EDSR = {'name': 'edsr-baseline', 'args': {'n_resblocks': 2, 'n_feats': 8,
                                                'no_upsampling': True}}
TINY_MLP = {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [16, 16]}}


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return LIIF(TINY_EDSR, TINY_MLP).eval()


def test_render_is_the_model_at_every_pixel_centre(model):
    lr = torch.rand(3, 6, 7)
    coord = make_coord((15, 11)).unsqueeze(0)
    with torch.no_grad():
        pred = model((lr - 0.5).unsqueeze(0) / 0.5, coord, make_cell(coord, (15, 11)))
    want = (pred * 0.5 + 0.5).clamp(0, 1).view(15, 11, 3).permute(2, 0, 1)
    assert torch.equal(render(model, lr, (15, 11), bsize=None), want)
    assert torch.equal(render(model, lr, (15, 11), bsize=7), render(model, lr, (15, 11)))


def test_scale_pairs_and_batches(model):
    lr = torch.rand(2, 3, 6, 8)
    out = render(model, lr, scale=(2.5, 1.5))
    assert out.shape == (2, 3, 15, 12)
    assert torch.allclose(out[1], render(model, lr[1], (15, 12)), atol=1e-6)


def test_a_window_is_a_crop_of_the_whole_image(model):
    lr = torch.rand(3, 6, 7)
    whole = render(model, lr, (24, 28))
    window = render(model, lr, (24, 28), window=(5, 9, 10, 12))
    assert window.shape == (3, 10, 12)
    assert torch.allclose(window, whole[:, 5:15, 9:21], atol=1e-5)


def test_bicubic_renders_as_resize_fn():
    lr = torch.rand(3, 7, 9)
    assert torch.equal(render(BICUBIC, lr, (17, 25)), resize_fn(lr, (17, 25)).clamp(0, 1))


def test_the_cell_can_be_told_otherwise(model):
    lr = torch.rand(3, 5, 5)
    true = render(model, lr, (20, 20))
    assert torch.equal(render(model, lr, (20, 20), cell=(2 / 20, 2 / 20)), true)
    assert not torch.equal(render(model, lr, (20, 20), cell=(2 / 5, 2 / 5)), true)
