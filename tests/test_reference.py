"""liif_core against the outputs the official code computed for the reference checkpoint."""
import pytest
import torch

import liif_core
from liif_core import calc_psnr, load_model, make_coord


@pytest.fixture(scope='module')
def model(reference_ckpt_path):
    return load_model(reference_ckpt_path)


def test_make_coord_is_bit_exact(reference):
    assert torch.equal(make_coord((3, 6)), reference['make_coord_3x6'])


def test_encoder_matches(model, reference):
    with torch.no_grad():
        feat = model.gen_feat(reference['inp'])
    assert (feat - reference['feat']).abs().max() <= 1e-5


@pytest.mark.parametrize('fast', [False, True], ids=['reference-path', 'fast-path'])
@pytest.mark.parametrize('case', ['grid', 'rand'])
def test_query_rgb_matches(model, reference, case, fast):
    with torch.no_grad():
        model.gen_feat(reference['inp'])
        out = model.query_rgb(reference[f'{case}_coord'], reference[f'{case}_cell'], fast=fast)
    assert out.shape == reference[f'{case}_out'].shape
    assert (out - reference[f'{case}_out']).abs().max() <= 1e-5


@pytest.mark.parametrize('fast', [False, True], ids=['reference-path', 'fast-path'])
def test_query_rgb_without_ensemble_matches(reference_ckpt_path, reference, fast):
    ckpt = torch.load(reference_ckpt_path, map_location='cpu', weights_only=True)
    ckpt['model']['args']['local_ensemble'] = False
    model = load_model(ckpt)
    with torch.no_grad():
        out = model(reference['inp'], reference['grid_coord'], reference['grid_cell'])
    assert (out - reference['grid_out_no_ensemble']).abs().max() <= 1e-5


def test_forward_equals_gen_feat_then_query(model, reference):
    with torch.no_grad():
        out = model(reference['inp'], reference['rand_coord'], reference['rand_cell'])
    assert (out - reference['rand_out']).abs().max() <= 1e-5


@pytest.mark.parametrize('dataset, scale, key', [('benchmark', 3, 'psnr_benchmark_3'),
                                                  ('div2k', 2, 'psnr_div2k_2')])
def test_calc_psnr_matches(reference, dataset, scale, key):
    psnr = calc_psnr(reference['psnr_sr'], reference['psnr_hr'], dataset=dataset, scale=scale)
    assert abs(psnr.item() - reference[key].item()) <= 1e-4


def test_public_api_names():
    for name in ['make_coord', 'to_pixel_samples', 'LIIF', 'EDSR', 'RDN', 'MLP', 'MetaSR',
                 'make_model', 'load_model', 'save_model', 'batched_predict', 'calc_psnr',
                 'resize_fn']:
        assert hasattr(liif_core, name), name
