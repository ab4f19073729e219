"""Evaluation: the official eval_psnr against hand computations, the scale sweep's bicubic row
against resize_fn + PSNR, and ``liif test``."""
import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from liif_core import make_cell, make_coord, make_model, resize_fn, save_model
from liif_core.cli import main as cli_main
from liif_core.data import SRImplicitDownsampled
from liif_core.evaluate import evaluate, evaluate_scales, make_test_pair
from liif_core.render import BICUBIC
from liif_core.report import format_table, read_json, write_csv, write_json

TINY_MODEL = {'name': 'liif', 'args': {
    'encoder_spec': {'name': 'edsr-baseline',
                     'args': {'n_resblocks': 1, 'n_feats': 8, 'no_upsampling': True}},
    'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [16]}}}}
Y = np.array([65.738, 129.057, 25.064]) / 256


class CoordModel(nn.Module):
    """Predicts a fixed function of the query (normalised units, spanning beyond [-1, 1] so
    that the clamp matters): row * 3 in R, col * 2 in G, row * col in B."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # gives the model a device

    def forward(self, inp, coord, cell):
        r, c = coord[..., 0], coord[..., 1]
        return torch.stack([3 * r, 2 * c, r * c], dim=-1)  # (B, Q, 3)


def coord_model_sr(H, W):
    """CoordModel's output for a full H x W grid, de-normalised and clamped, in numpy (H, W, 3)."""
    r = (-1 + (2 * np.arange(H) + 1) / H)[:, None] * np.ones((1, W))
    c = np.ones((H, 1)) * (-1 + (2 * np.arange(W) + 1) / W)[None, :]
    return np.clip(np.stack([3 * r, 2 * c, r * c], -1) * 0.5 + 0.5, 0, 1)


def random_image(H, W, seed):
    g = np.random.default_rng(seed)
    return np.round(g.random((H, W, 3)) * 255) / 255  # (H, W, 3) k/255


def full_item(hr, h, w):
    """A test item: LR of h x w (content irrelevant to CoordModel), every HR pixel queried."""
    H, W = hr.shape[:2]
    coord = make_coord((H, W))
    return {'inp': torch.rand(3, h, w), 'coord': coord, 'cell': make_cell(coord, (H, W)),
            'gt': torch.from_numpy(hr.reshape(-1, 3)).float()}


def read_csv(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def hand_psnr(sr, hr, shave=0, luma=False):
    d = sr - hr
    if luma:
        d = d @ Y
    if shave:
        d = d[shave:-shave, shave:-shave]
    return -10 * math.log10(np.mean(d ** 2))


@pytest.mark.parametrize('eval_type, shave, luma', [('div2k-4', 10, False),
                                                    ('benchmark-4', 4, True)])
def test_evaluate_equals_hand_computation(eval_type, shave, luma):
    hrs = [random_image(32, 40, 0), random_image(36, 28, 1)]  # x4 of 8x10 and 9x7
    items = [full_item(hr, hr.shape[0] // 4, hr.shape[1] // 4) for hr in hrs]
    result = evaluate(CoordModel(), items, eval_type=eval_type, progress=False)
    expected = [hand_psnr(coord_model_sr(*hr.shape[:2]), hr.astype(np.float32), shave, luma)
                for hr in hrs]
    assert result.per_image == pytest.approx(expected, abs=1e-4)
    assert result.psnr == pytest.approx(np.mean(expected), abs=1e-4)


def test_evaluate_ssim_is_scikit_image_on_the_scored_pixels():
    from skimage.metrics import structural_similarity
    # x4 of 10x11 and 9x7: the second leaves 16x8 pixels after the div2k shave, fewer than the
    # 11-pixel SSIM window.
    hrs = [random_image(40, 44, 0), random_image(36, 28, 1)]
    items = [full_item(hr, hr.shape[0] // 4, hr.shape[1] // 4) for hr in hrs]
    result = evaluate(CoordModel(), items, eval_type='div2k-4', progress=False)
    crop = (slice(10, -10), slice(10, -10))
    expected = structural_similarity(
        coord_model_sr(40, 44)[crop], hrs[0][crop], channel_axis=2, gaussian_weights=True,
        sigma=1.5, use_sample_covariance=False, data_range=1)
    assert result.per_image_ssim[0] == pytest.approx(expected, abs=1e-5)
    assert result.per_image_ssim[1] is None and result.ssim is None
    alone = evaluate(CoordModel(), items[:1], eval_type='div2k-4', progress=False)
    assert alone.ssim == alone.per_image_ssim[0]
    # Without a protocol the queries are points, not an image: no SSIM.
    plain = evaluate(CoordModel(), items, progress=False)
    assert plain.ssim is None and plain.per_image_ssim == []


def test_plain_psnr_is_per_batch_weighted_by_batch_size():
    """eval_type None: one MSE over each whole batch, batches weighted by size."""
    sr = coord_model_sr(12, 12)
    # Errors of very different sizes, so that the batch MSE differs from per-image PSNRs.
    hrs = [random_image(12, 12, 0), np.round(sr * 255) / 255, random_image(12, 12, 2)]
    items = [full_item(hr, 4, 4) for hr in hrs]
    result = evaluate(CoordModel(), DataLoader(items, batch_size=2), progress=False)
    batch_1 = -10 * math.log10(np.mean([(sr - hr) ** 2 for hr in hrs[:2]]))
    batch_2 = hand_psnr(sr, hrs[2])
    assert result.psnr == pytest.approx((2 * batch_1 + batch_2) / 3, abs=1e-4)
    assert result.per_image == pytest.approx([hand_psnr(sr, hr) for hr in hrs], abs=1e-4)
    assert abs(result.psnr - np.mean(result.per_image)) > 1


def test_chunked_prediction_equals_one_pass():
    model = make_model(TINY_MODEL)
    hr = torch.from_numpy(random_image(24, 20, 2)).permute(2, 0, 1).float()
    dataset = SRImplicitDownsampled([hr], scale_min=2)
    whole = evaluate(model, dataset, 'div2k-2', eval_bsize=None, progress=False)
    chunked = evaluate(model, dataset, 'div2k-2', eval_bsize=37, progress=False)
    assert chunked.psnr == pytest.approx(whole.psnr, abs=1e-5)


def test_bicubic_prediction_is_resize_fn_at_the_queries():
    lr = torch.from_numpy(random_image(7, 9, 3)).permute(2, 0, 1).float()
    H, W = 17, 25  # a non-integer, per-axis upscale
    coord = make_coord((H, W))
    up = BICUBIC(lr[None], coord[None], make_cell(coord, (H, W))[None])[0]  # (Q, 3)
    assert torch.equal(up.t().reshape(3, H, W), resize_fn(lr, (H, W)))
    keep = torch.randperm(H * W)[:50]  # sampled queries, as in validation
    sub = BICUBIC(lr[None], coord[keep][None], make_cell(coord[keep], (H, W))[None])[0]
    assert torch.equal(sub, up[keep])


@pytest.mark.parametrize('scale', [2, 3, 2.5, 7])
def test_make_test_pair_is_the_wrappers_test_item(scale):
    hr = torch.from_numpy(random_image(45, 52, 4)).permute(2, 0, 1).float()
    lr, hr_crop = make_test_pair(hr, scale)
    item = SRImplicitDownsampled([hr], scale_min=scale)[0]
    assert torch.equal(lr, item['inp'])
    assert torch.equal(hr_crop.reshape(3, -1).t(), item['gt'])


def test_sweep_bicubic_row_equals_resize_fn_psnr_and_ssim():
    from liif_core import calc_psnr
    from liif_core.metrics import calc_ssim
    images = [torch.from_numpy(random_image(40, 46, s)).permute(2, 0, 1).float() for s in (5, 6)]
    scales = [2, 3, 2.5, (2, 3)]
    rows = evaluate_scales(None, images, scales, protocol='benchmark', progress=False)
    for row, scale in zip(rows, scales):
        s_row, s_col = scale if isinstance(scale, tuple) else (scale, scale)
        expected, expected_ssim = [], []
        for hr in images:
            h, w = math.floor(40 / s_row + 1e-9), math.floor(46 / s_col + 1e-9)
            crop = hr[:, :round(h * s_row), :round(w * s_col)]
            up = resize_fn(resize_fn(crop, (h, w)), crop.shape[-2:])
            expected.append(calc_psnr(up, crop, 'benchmark', max(s_row, s_col)).item())
            expected_ssim.append(calc_ssim(up, crop, 'benchmark', max(s_row, s_col)).item())
        assert row.per_image_bicubic == pytest.approx(expected, abs=1e-5)
        assert row.psnr_bicubic == pytest.approx(np.mean(expected), abs=1e-5)
        assert row.per_image_ssim_bicubic == pytest.approx(expected_ssim, abs=1e-6)
        assert row.ssim_bicubic == pytest.approx(np.mean(expected_ssim), abs=1e-6)
        assert row.psnr is None and row.per_image == []
        assert row.ssim is None and row.per_image_ssim == []


def test_sweep_model_row_equals_evaluate_on_the_official_test_items():
    torch.manual_seed(0)
    model = make_model(TINY_MODEL)
    images = [torch.from_numpy(random_image(48, 40, s)).permute(2, 0, 1).float() for s in (7, 8)]
    rows = evaluate_scales(model, images, [2, 4], protocol='div2k', bicubic=False,
                           progress=False)
    for row, scale in zip(rows, [2, 4]):
        dataset = SRImplicitDownsampled(images, scale_min=scale)
        official = evaluate(model, dataset, f'div2k-{scale}', eval_bsize=30000, progress=False)
        assert row.psnr == pytest.approx(official.psnr, abs=1e-5)
        assert row.per_image == pytest.approx(official.per_image, abs=1e-5)
        assert row.per_image_ssim == pytest.approx(official.per_image_ssim, abs=1e-6)
        assert row.ssim == pytest.approx(official.ssim, abs=1e-6)
        assert row.psnr_bicubic is None and row.ssim_bicubic is None


def test_table_csv_and_json(tmp_path):
    images = [torch.from_numpy(random_image(30, 30, 9)).permute(2, 0, 1).float()]
    rows = evaluate_scales(make_model(TINY_MODEL), images, [2, 2.5], protocol='div2k',
                           progress=False)
    table = format_table(rows, 'tiny')
    lines = table.splitlines()
    assert lines[0] == '| method | x2 | x2.5 |'
    assert lines[2].startswith('| bicubic | ') and lines[3].startswith('| tiny | ')
    assert f'{rows[1].psnr:.2f}' in lines[3]
    ssim_table = format_table(rows, 'tiny', metric='ssim').splitlines()
    assert ssim_table[3] == f'| tiny | {rows[0].ssim:.4f} | {rows[1].ssim:.4f} |'
    write_csv(rows, tmp_path / 'sweep.csv')
    write_csv(rows, tmp_path / 'per-image.csv', per_image=True)
    summary = read_csv(tmp_path / 'sweep.csv')
    assert list(summary[0]) == ['scale', 'psnr', 'psnr_bicubic', 'ssim', 'ssim_bicubic',
                                'n_images']
    assert [r['scale'] for r in summary] == ['2', '2.5']
    assert float(summary[0]['psnr_bicubic']) == pytest.approx(rows[0].psnr_bicubic, abs=1e-4)
    assert float(summary[1]['ssim_bicubic']) == pytest.approx(rows[1].ssim_bicubic, abs=1e-4)
    per_image = read_csv(tmp_path / 'per-image.csv')
    assert [(r['scale'], r['image']) for r in per_image] == [('2', 'image-0'), ('2.5', 'image-0')]
    assert float(per_image[0]['ssim']) == pytest.approx(rows[0].per_image_ssim[0], abs=1e-4)
    write_json(rows, tmp_path / 'sweep.json', command='test')
    assert read_json(tmp_path / 'sweep.json') == (rows, {'command': 'test'})


def test_json_written_before_ssim_reads_as_none(tmp_path):
    (tmp_path / 'old.json').write_text(json.dumps({
        'command': 'old', 'images': ['a.png'],
        'rows': [{'scale': [2, 3], 'psnr': 30.0, 'psnr_bicubic': 29.0, 'per_image': [30.0],
                  'per_image_bicubic': [29.0]}]}))
    (row,), meta = read_json(tmp_path / 'old.json')
    assert meta == {'command': 'old'} and row.scale == (2, 3) and row.psnr == 30.0
    assert row.ssim is None and row.ssim_bicubic is None
    assert row.per_image_ssim == [] and row.per_image_ssim_bicubic == []
    assert format_table([row], metric='ssim') == "| method | x2x3 |\n|---|---|"


@pytest.fixture
def tiny_weights_and_images(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / 'tiny.pth'
    save_model(make_model(TINY_MODEL), weights)
    folder = tmp_path / 'hr'
    folder.mkdir()
    for s in range(2):
        Image.fromarray((random_image(36, 42, s) * 255).round().astype(np.uint8)).save(
            folder / f'{s:04d}.png')
    return weights, folder


def test_cli_sweep(tiny_weights_and_images, tmp_path, capsys):
    weights, folder = tiny_weights_and_images
    out = tmp_path / 'sweep.csv'
    assert cli_main(['test', '--weights', str(weights), '--hr', str(folder), '--scales',
                     '2,3,2x3', '--protocol', 'benchmark', '--csv', str(out)]) == 0
    printed = capsys.readouterr().out
    assert '| method | x2 | x3 | x2x3 |' in printed and '| bicubic |' in printed
    rows = evaluate_scales(None, folder, [2, 3, (2, 3)], protocol='benchmark', progress=False)
    assert '\nSSIM, protocol benchmark, 2 images' in printed
    assert '| bicubic | ' + ' | '.join(f'{r.ssim_bicubic:.4f}' for r in rows) + ' |' in printed
    summary = read_csv(out)
    assert [float(r['psnr_bicubic']) for r in summary] == pytest.approx(
        [r.psnr_bicubic for r in rows], abs=1e-4)
    assert [float(r['ssim_bicubic']) for r in summary] == pytest.approx(
        [r.ssim_bicubic for r in rows], abs=1e-4)


def test_cli_runs_an_official_test_config(tiny_weights_and_images, tmp_path, capsys):
    weights, folder = tiny_weights_and_images
    config = tmp_path / 'test-tiny-3.yaml'
    config.write_text(f"""test_dataset:
  dataset:
    name: image-folder
    args:
      root_path: {folder}
  wrapper:
    name: sr-implicit-downsampled
    args:
      scale_min: 3
  batch_size: 1
eval_type: benchmark-3
eval_bsize: 30000
data_norm:
  inp: {{sub: [0.5], div: [0.5]}}
  gt: {{sub: [0.5], div: [0.5]}}
""")
    assert cli_main(['test', str(config), '--weights', str(weights)]) == 0
    printed = capsys.readouterr().out
    from liif_core import load_model
    rows = evaluate_scales(load_model(weights), folder, [3], protocol='benchmark',
                           progress=False)
    assert f'result: {rows[0].psnr:.4f}\nssim: {rows[0].ssim:.4f}\n' in printed
    assert (f'bicubic: {rows[0].psnr_bicubic:.4f}\nbicubic ssim: {rows[0].ssim_bicubic:.4f}\n'
            in printed)
    # The same config as the source of HR images for a sweep (protocol from its eval_type).
    assert cli_main(['test', str(config), '--weights', str(weights), '--scales', '3,4',
                     '--first-k', '1', '--label', 'tiny']) == 0
    table = capsys.readouterr().out
    rows = evaluate_scales(load_model(weights), folder, [3, 4], protocol='benchmark',
                           first_k=1, progress=False)
    assert 'protocol benchmark, 1 images' in table
    assert '| tiny | ' + ' | '.join(f'{r.psnr:.2f}' for r in rows) + ' |' in table
