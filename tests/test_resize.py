"""resize_fn: PIL bicubic through a truncating uint8 conversion (the official semantics)."""
import numpy as np
import pytest
import torch
from PIL import Image

from liif_core import resize_fn


def k_over_255(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g).float() / 255


def test_tuple_size_equals_pil_bicubic():
    img = k_over_255((3, 20, 30))
    pixels = (img * 255).round().byte().permute(1, 2, 0).numpy()
    expected = np.asarray(Image.fromarray(pixels).resize((11, 7), Image.BICUBIC))
    out = resize_fn(img, (7, 11))
    assert out.shape == (3, 7, 11) and out.dtype == torch.float32
    assert torch.equal(out, torch.from_numpy(expected.copy()).permute(2, 0, 1).float() / 255)


def test_int_size_matches_the_shorter_edge():
    img = k_over_255((3, 20, 30))
    assert resize_fn(img, 10).shape == (3, 10, 15)
    assert resize_fn(k_over_255((3, 31, 20)), 10).shape == (3, 15, 10)  # int(10 * 31 / 20)


def test_int_size_equal_to_short_edge_is_unchanged():
    img = k_over_255((3, 48, 60))
    assert torch.equal(resize_fn(img, 48), img)


def test_float_to_uint8_truncates():
    img = torch.full((3, 4, 4), 0.999)  # 254.745 -> 254, where rounding would give 255
    assert torch.all(resize_fn(img, (4, 4)) == 254 / 255)


def test_bad_shape():
    with pytest.raises(ValueError, match=r'\(3, H, W\)'):
        resize_fn(torch.zeros(1, 3, 4, 4), (2, 2))
