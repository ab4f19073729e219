"""Mixed precision: both decoding paths run under CPU autocast (bfloat16), in inference and
training, close to float32; coordinates and lookups stay float32; half-precision inference by
name in ``render``, ``upscale`` and ``liif upscale --dtype``."""
import importlib

import numpy as np
import pytest
import torch

from liif_core import LIIF, load_model, render, upscale
from liif_core.render import precision

# The module: the package's name ``render`` is the function.
RENDER = importlib.import_module('liif_core.render')
DEVICE = importlib.import_module('liif_core.device')

SMALL_EDSR = {'name': 'edsr-baseline', 'args': {'n_resblocks': 2, 'n_feats': 16,
                                                 'no_upsampling': True}}
DEEP_MLP = {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [256, 256]}}
# bfloat16 keeps 8 significant bits. Measured against float32 on the official reference
# checkpoint, in the model's [-1, 1] units: max abs difference 0.021 (both paths), mean 0.0035.
BF16_MAX = 0.05
BF16_MEAN = 0.01


def bf16():
    return torch.autocast('cpu', dtype=torch.bfloat16)


@pytest.fixture
def bf16_units(monkeypatch):
    """bfloat16 by name on any CPU: one without the instructions emulates the same arithmetic
    (slowly, which is why the library refuses it there)."""
    monkeypatch.setattr(RENDER, 'cpu_has_bf16', lambda: True)


@pytest.mark.parametrize('fast', [True, False], ids=['fast', 'reference'])
def test_both_paths_under_autocast_are_close_to_float32(reference_ckpt_path, reference, fast):
    model = load_model(reference_ckpt_path)
    for case in ('grid', 'rand'):
        coord, cell = reference[f'{case}_coord'], reference[f'{case}_cell']
        with torch.no_grad():
            model.gen_feat(reference['inp'])
            want = model.query_rgb(coord, cell, fast=fast)
            with bf16():
                model.gen_feat(reference['inp'])
                got = model.query_rgb(coord, cell, fast=fast)
        assert got.dtype == torch.float32  # blended with float32 weights
        diff = (got - want).abs()
        assert diff.max() <= BF16_MAX and diff.mean() <= BF16_MEAN, case


def test_the_projection_follows_autocast():
    """A projection made under autocast is not reused outside it, nor the other way round."""
    model = LIIF(SMALL_EDSR, DEEP_MLP)
    coord = torch.rand(1, 50, 2) * 2 - 1
    cell = torch.full((1, 50, 2), 0.1)
    with torch.no_grad():
        model.gen_feat(torch.randn(1, 3, 6, 5))
        want = model.query_rgb(coord, cell)
        with bf16():
            half = model.query_rgb(coord, cell)
        assert torch.equal(model.query_rgb(coord, cell), want)
        with bf16():
            assert torch.equal(model.query_rgb(coord, cell), half)


def test_code_lookup_stays_float32_on_large_maps():
    """Code centres and indices in float32, whatever the features' dtype: in bfloat16, index
    2049 would round to 2048 and centres would move by up to 5e-4."""
    feat = torch.zeros(1, 1, 3, 2500, dtype=torch.bfloat16)
    lookup = LIIF._code_map(feat.shape, torch.zeros(1, 1, 2))
    assert lookup.dtype == torch.float32
    assert torch.equal(lookup[0, 1, 0], torch.arange(2500, dtype=torch.float32))


@pytest.mark.parametrize('fast', [True, False], ids=['fast', 'reference'])
def test_a_training_step_under_autocast(fast):
    model = LIIF(SMALL_EDSR, DEEP_MLP)
    coord = (torch.rand(2, 200, 2) * 2 - 1) * 1.1
    cell = torch.rand(2, 200, 2) * 0.3 + 0.01
    target = torch.rand(2, 200, 3) * 2 - 1
    with bf16():
        model.gen_feat(torch.randn(2, 3, 8, 7))
        loss = (model.query_rgb(coord, cell, fast=fast) - target).abs().mean()
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        if not p.requires_grad:  # the encoder's fixed mean shift
            continue
        assert p.grad is not None and p.grad.dtype == torch.float32, name
        assert torch.isfinite(p.grad).all(), name


def test_render_and_upscale_in_bfloat16(bf16_units):
    torch.manual_seed(0)
    model = LIIF(SMALL_EDSR, DEEP_MLP).eval()
    lr = torch.rand(3, 12, 10)
    want = render(model, lr, scale=3)
    for got in (render(model, lr, scale=3, dtype='bfloat16'),
                upscale(lr, scale=3, model=model, dtype='bfloat16'),
                upscale(lr, scale=3, model=model, dtype=torch.bfloat16)):
        assert got.dtype == torch.float32 and got.shape == want.shape
        assert (got - want).abs().max() <= BF16_MAX / 2  # [0, 1] is half of [-1, 1]
    with bf16():  # the caller's own autocast works too
        got = render(model, lr, scale=3)
    assert (got - want).abs().max() <= BF16_MAX / 2
    # float32 by name is the default path, bit for bit
    assert torch.equal(upscale(lr, scale=3, model=model, dtype='float32'),
                       upscale(lr, scale=3, model=model))


def test_upscale_in_bfloat16_returns_an_image(bf16_units):
    torch.manual_seed(0)
    model = LIIF(SMALL_EDSR, DEEP_MLP).eval()
    image = (np.random.rand(9, 11, 3) * 255).astype(np.uint8)
    out = upscale(image, scale=2, model=model, dtype='bfloat16')
    assert out.dtype == np.uint8 and out.shape == (18, 22, 3)
    assert np.abs(out.astype(int) - upscale(image, scale=2, model=model).astype(int)).max() <= 7


def test_unknown_or_unsupported_dtypes_fail_in_one_line(monkeypatch):
    with pytest.raises(ValueError, match='dtype must be one of float32, bfloat16, float16'):
        precision('half', 'cpu')
    monkeypatch.setattr(torch.ops.mkldnn, '_is_mkldnn_fp16_supported', lambda: False)
    with pytest.raises(ValueError, match=r'^float16 inference is not supported on cpu; use '
                                         r'float32 or bfloat16$'):
        precision('float16', 'cpu')


@pytest.mark.parametrize('flags, units', [('fpu avx2 fma', False), ('avx512f avx512_bf16', True),
                                          ('avx512f amx_bf16 amx_tile', True),
                                          ('fp asimd bf16', True), ('avx512f avx512bw', False)])
def test_bfloat16_needs_the_instructions(monkeypatch, flags, units):
    """Read from /proc/cpuinfo: x86 AVX-512 BF16 or AMX, or Arm BF16. Without them bfloat16 is
    refused in one line, by the library and by liif upscale, before any work."""
    monkeypatch.setattr(DEVICE, 'cpu_flags', lambda: frozenset(flags.split()))
    assert RENDER.cpu_has_bf16() is units
    if units:
        assert precision('bfloat16', 'cpu') is not None
        return
    one_line = r'^bfloat16 inference needs a CPU with bfloat16 instructions [^\n]*; use float32$'
    lr = torch.rand(3, 4, 4)
    for call in (lambda: precision('bfloat16', 'cpu'),
                 lambda: upscale(lr, scale=2, model=LIIF(SMALL_EDSR, DEEP_MLP),
                                 dtype='bfloat16'),
                 lambda: render(LIIF(SMALL_EDSR, DEEP_MLP), lr, scale=2, dtype=torch.bfloat16)):
        with pytest.raises(ValueError, match=one_line):
            call()


def test_cli_dtype(tmp_path, bf16_units):
    from liif_core.cli import main
    from PIL import Image
    Image.fromarray((np.random.rand(8, 9, 3) * 255).astype(np.uint8)).save(tmp_path / 'in.png')
    assert main(['upscale', str(tmp_path / 'in.png'), str(tmp_path / 'out.png'), '--scale', '2',
                 '--dtype', 'bfloat16', '--no-progress', '--device', 'cpu']) == 0
    assert Image.open(tmp_path / 'out.png').size == (18, 16)
