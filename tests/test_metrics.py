import math

import pytest
import torch

from liif_core import calc_psnr
from liif_core.metrics import calc_ssim


def test_plain_psnr():
    hr = torch.zeros(1, 3, 8, 8)
    sr = hr + 0.1
    assert calc_psnr(sr, hr).item() == pytest.approx(20.0, abs=1e-4)


def test_div2k_shaves_scale_plus_six_on_rgb():
    hr = torch.zeros(1, 3, 30, 30)
    sr = hr.clone()
    sr[..., :8, :] = 1.0  # only inside the 2 + 6 = 8 pixel border: shaved away
    sr[..., 8:22, 8:22] = 0.01
    assert calc_psnr(sr, hr, 'div2k', 2).item() == pytest.approx(40.0, abs=1e-4)


def test_benchmark_uses_luma_of_the_difference():
    hr = torch.zeros(1, 3, 12, 12)
    sr = hr.clone()
    sr[:, 0] = 0.1  # red only: Y difference is 0.1 * 65.738 / 256
    expected = -10 * math.log10((0.1 * 65.738 / 256) ** 2)
    assert calc_psnr(sr, hr, 'benchmark', 3).item() == pytest.approx(expected, abs=1e-4)


def test_errors():
    with pytest.raises(ValueError, match='dataset'):
        calc_psnr(torch.zeros(1, 3, 9, 9), torch.zeros(1, 3, 9, 9), 'set5', 2)
    with pytest.raises(ValueError, match='too small'):
        calc_psnr(torch.zeros(1, 3, 9, 9), torch.ones(1, 3, 9, 9), 'div2k', 2)


@pytest.mark.parametrize('dataset,scale', [(None, 1), ('div2k', 2), ('benchmark', 3)])
def test_ssim_equals_scikit_image_on_the_scored_pixels(dataset, scale):
    metrics = pytest.importorskip('skimage.metrics')
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(1, 3, 40, 52, generator=g)
    sr = (hr + 0.1 * torch.randn(1, 3, 40, 52, generator=g)).clamp(0, 1)
    got = calc_ssim(sr, hr, dataset, scale).item()
    a, b = sr[0].double(), hr[0].double()
    if dataset is not None:
        shave = scale + (6 if dataset == 'div2k' else 0)
        a, b = (x[:, shave:-shave, shave:-shave] for x in (a, b))
    if dataset == 'benchmark':  # luma, with its offset
        w = torch.tensor([65.738, 129.057, 25.064], dtype=torch.float64).view(3, 1, 1) / 256
        a, b = ((x * w).sum(0) + 16 / 255 for x in (a, b))
        want = metrics.structural_similarity(
            a.numpy(), b.numpy(), gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1)
    else:
        want = metrics.structural_similarity(
            a.numpy(), b.numpy(), gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1, channel_axis=0)
    assert 0.3 < want < 0.99
    assert got == pytest.approx(want, abs=1e-10)


def test_ssim_is_one_for_equal_images_and_refuses_small_ones():
    img = torch.rand(3, 30, 30)
    assert calc_ssim(img, img, 'div2k', 2).item() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match='SSIM window'):
        calc_ssim(img, img, 'div2k', 4)  # 30 - 2 * 10 = 10 pixels left < 11
    with pytest.raises(ValueError, match='too small'):
        calc_ssim(img, img, 'div2k', 9)
