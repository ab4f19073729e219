import math

import pytest
import torch

from liif_core import calc_psnr


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
