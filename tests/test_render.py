"""render: whole images and windows, any size or scale pair, bicubic through the same call,
and chunks of queries sized per device."""
import sys

import pytest
import torch

from liif_core import (BICUBIC, LIIF, MetaSR, batched_predict, make_cell, make_coord, render,
                       resize_fn)
from liif_core.render import EVAL_BSIZE, FAST_QUERY_BYTES, chunk_size, query_bytes

render_module = sys.modules['liif_core.render']  # the package attribute is the function

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


# -- chunks per device ---------------------------------------------------------------------------

def no_cuda_query(device=None):
    raise AssertionError('a CPU chunk must not depend on CUDA memory')


def test_on_a_cpu_the_chunk_is_the_official_one(model, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'mem_get_info', no_cuda_query)
    assert chunk_size(torch.device('cpu'), 10**9, 64, EVAL_BSIZE) == EVAL_BSIZE
    chunks = []

    def spy(model, inp, coord, cell, bsize):
        chunks.append(bsize)
        return batched_predict(model, inp, coord, cell, bsize)

    monkeypatch.setattr(render_module, 'batched_predict', spy)
    lr = torch.rand(3, 6, 7)
    out = render(model, lr, (15, 11))
    assert chunks == [EVAL_BSIZE]
    assert torch.equal(out, render(model, lr, (15, 11), bsize=EVAL_BSIZE))


def test_on_cuda_the_chunk_follows_free_memory(monkeypatch):
    cuda = torch.device('cuda')
    free = 2**30
    monkeypatch.setattr(torch.cuda, 'mem_get_info', lambda device=None: (free, 4 * free))
    # Everything in one chunk when it fits in half the free memory...
    assert chunk_size(cuda, 10**6, 64, EVAL_BSIZE) == 10**6
    assert chunk_size(cuda, 2**23, 64, EVAL_BSIZE) == 2**23  # exactly half of 1 GiB
    # ...as many as fit when not, fixed costs first, and never none.
    assert chunk_size(cuda, 10**9, 64, EVAL_BSIZE) == 2**23
    assert chunk_size(cuda, 10**9, 64, EVAL_BSIZE, fixed_bytes=2**28) == 2**22
    assert chunk_size(cuda, 10**9, 2**40, EVAL_BSIZE) == 1


def test_query_bytes_of_each_decoder(model):
    assert query_bytes(model) == FAST_QUERY_BYTES  # the fast path's MLP chunks are fixed
    metasr = MetaSR(TINY_EDSR)  # every query holds its code and its predicted weights at once
    assert query_bytes(metasr) > 4 * 9 * 8 * 3 + FAST_QUERY_BYTES
