"""upscale / upscale_file: tiled == untiled decoding, output sizes, modes, PNG streaming."""
import io
import struct
import sys
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

import liif_core
from liif_core import LIIF, load_model
from liif_core.bands import (BAND_PIXEL_BYTES, BAND_PIXELS, MARGIN_ROWS, band_rows,
                             latent_bytes)
from liif_core.png import PngStream, read_png16
from liif_core.render import decoder_fixed_bytes, output_size, query_bytes, render
from liif_core.upscale import upscale, upscale_file

TINY_EDSR = {'name': 'edsr-baseline', 'args': {'n_resblocks': 2, 'n_feats': 16,
                                                'no_upsampling': True}}
TINY_MLP = {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [32, 32]}}
ICC = b'not a real profile, but PIL carries any bytes'


@pytest.fixture(scope='module')
def tiny():
    torch.manual_seed(3)
    return LIIF(TINY_EDSR, TINY_MLP).eval()


@pytest.fixture(scope='module')
def reference_model(reference_ckpt_path):
    return load_model(reference_ckpt_path)


def smooth(h, w, channels=3, seed=0):
    """A smooth random image (channels, h, w) in [0, 1], like a photo rather than noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, channels, max(2, h // 6), max(2, w // 6), generator=g)
    return F.interpolate(coarse, size=(h, w), mode='bicubic', align_corners=False)[0].clamp(0, 1)


def untiled(model, img, H, W):
    """The straightforward decoding: whole feature map, every query at once, in [0, 1]."""
    return render(model, img, (H, W), bsize=None)  # (3, H, W)


def read_image(path):
    with Image.open(path) as image:
        image.load()
    return image


def to_pil(img):
    return Image.fromarray(np.rint(img.permute(1, 2, 0).numpy() * 255).astype(np.uint8))


# -- output size -------------------------------------------------------------------------------

def test_output_size():
    assert output_size(10, 20, size=(7, 300)) == (7, 300)
    assert output_size(10, 20, scale=2.5) == (25, 50)
    assert output_size(10, 20, scale=(2, 0.5)) == (20, 10)  # anisotropic
    assert output_size(10, 20, scale=0.25) == (2, 5)  # round(2.5) = 2, round(5.0) = 5
    assert output_size(5, 7, scale=0.3) == (2, 2)  # round(1.5) = 2 (halves to even), 2.1 -> 2
    assert output_size(10, 20, scale=0.001) == (1, 1)  # never below one pixel


@pytest.mark.parametrize('kwargs', [{}, dict(size=(4, 4), scale=2), dict(scale=0),
                                    dict(scale=-1), dict(scale=float('nan')),
                                    dict(scale=float('inf')), dict(scale=1e308),
                                    dict(size=(0, 5)), dict(size=(4.5, 5)), dict(scale=(1, 2, 3))])
def test_output_size_rejects(kwargs):
    with pytest.raises(ValueError):
        output_size(10, 20, **kwargs)


def test_model_must_be_a_liif():
    # no model means the shipped weights (tests/test_pretrained.py); other models are refused
    assert liif_core.upscale is upscale
    metasr = liif_core.make_model({'name': 'metasr', 'args': {'encoder_spec': {
        'name': 'edsr-baseline', 'args': {'no_upsampling': True}}}})
    with pytest.raises(ValueError, match='needs a LIIF model'):
        upscale(np.zeros((4, 4, 3), np.uint8), scale=2, model=metasr)


# -- tiled == untiled --------------------------------------------------------------------------

@pytest.mark.parametrize('h, w, H, W, tile_rows, encoder_tile_rows', [
    (20, 9, 45, 20, 1, 1),  # one output row per band, one latent row per encoder tile
    (40, 9, 97, 20, 7, 3),  # tiles much thinner than the encoder's halo (6 rows)
    (40, 9, 151, 13, 16, 11),  # anisotropic: x3.8 rows, x1.4 cols
    (40, 9, 40, 20, 2, 5),  # one axis unchanged (a shrinking one is resized: test_hostile)
    (40, 9, 97, 20, 10 ** 6, 10 ** 6),  # one band, one tile
])
def test_tiled_equals_untiled(tiny, h, w, H, W, tile_rows, encoder_tile_rows):
    img = smooth(h, w)
    out = upscale(img, size=(H, W), model=tiny, tile_rows=tile_rows,
                  encoder_tile_rows=encoder_tile_rows)
    assert out.shape == (3, H, W) and out.dtype == torch.float32
    assert (out - untiled(tiny, img, H, W)).abs().max() <= 1e-5


def test_tiled_equals_untiled_reference_checkpoint(reference_model):
    # 96 rows in tiles of 20 with a 34-row halo: tile [40, 60) reads rows [6, 94), cut both sides.
    img = smooth(96, 8, seed=1)
    out = upscale(img, size=(130, 12), model=reference_model, tile_rows=9, encoder_tile_rows=20)
    assert (out - untiled(reference_model, img, 130, 12)).abs().max() <= 1e-5


# -- bands per device ----------------------------------------------------------------------------

def test_bands_on_a_cpu_keep_their_size(tiny, monkeypatch):
    def no_cuda_query(device=None):
        raise AssertionError('CPU bands must not depend on CUDA memory')

    monkeypatch.setattr(torch.cuda, 'mem_get_info', no_cuda_query)
    cpu = torch.device('cpu')
    assert band_rows(tiny, cpu, 100, 100, 400, 400) == BAND_PIXELS // 400  # 655 rows
    # Shrinking 3000 x 2000 to 50 x 75: a band's latent rows bound it, not its output pixels.
    assert band_rows(tiny, cpu, 3000, 2000, 50, 75) == (BAND_PIXELS // 2000) * 50 // 3000


def test_bands_on_cuda_follow_free_memory(tiny, monkeypatch):
    cuda = torch.device('cuda')
    h, w, H, W = 500, 600, 2000, 2400

    def band_bytes(rows):  # the estimate band_rows budgets with: queries, latent rows, MLP
        latent = rows * h / H + MARGIN_ROWS
        return (rows * W * (query_bytes(tiny) + BAND_PIXEL_BYTES)
                + latent * w * latent_bytes(tiny) + decoder_fixed_bytes(tiny, cuda))

    free = 2**40
    monkeypatch.setattr(torch.cuda, 'mem_get_info', lambda device=None: (free, free))
    assert band_rows(tiny, cuda, h, w, H, W) == H  # one band
    free = int(2 * band_bytes(H // 2))  # half the rows fit in the half a chunk may take
    rows = band_rows(tiny, cuda, h, w, H, W)
    assert band_bytes(rows) <= free / 2 < band_bytes(rows + 1)  # as many as fit
    assert H // 2 - 2 <= rows <= H // 2


# -- containers and modes ----------------------------------------------------------------------

def test_numpy_and_tensor_paths_round_to_nearest(tiny):
    array = np.rint(smooth(11, 8).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    out = upscale(array, scale=(2.5, 3), model=tiny)
    assert out.shape == (28, 24, 3) and out.dtype == np.uint8
    exact = upscale(torch.from_numpy(array).permute(2, 0, 1).float() / 255, scale=(2.5, 3),
                    model=tiny).permute(1, 2, 0).numpy() * 255  # (28, 24, 3)
    assert np.array_equal(out, np.rint(exact))
    assert not np.array_equal(out, np.floor(exact))  # rounding, not the demo's truncation
    gray = upscale(array[:, :, 0], size=(20, 9), model=tiny)
    assert gray.shape == (20, 9) and gray.dtype == np.uint8


def test_16_bit_numpy_rgb(tiny):
    array = np.rint(smooth(9, 10).permute(1, 2, 0).numpy() * 65535).astype(np.uint16)
    out = upscale(array, scale=2, model=tiny)
    assert out.dtype == np.uint16 and out.shape == (18, 20, 3)
    exact = upscale(torch.from_numpy(array.astype(np.float32) / 65535).permute(2, 0, 1),
                    scale=2, model=tiny)
    assert np.array_equal(out, np.rint(exact.permute(1, 2, 0).numpy() * 65535))
    assert (out % 257 != 0).mean() > 0.9  # really 16 bits, not 8 bits scaled up


def test_rgb_and_gray_keep_their_mode(tiny):
    rgb = to_pil(smooth(10, 12))
    out = upscale(rgb, size=(25, 31), model=tiny)
    assert out.mode == 'RGB' and out.size == (31, 25)
    gray = rgb.convert('L')
    out_gray = upscale(gray, size=(25, 31), model=tiny)
    assert out_gray.mode == 'L' and out_gray.size == (31, 25)
    # Gray is decoded as RGB, then converted with the luma weights.
    via_rgb = np.asarray(upscale(gray.convert('RGB'), size=(25, 31), model=tiny)).astype(float)
    luma = via_rgb @ np.array([0.299, 0.587, 0.114])
    assert np.abs(np.asarray(out_gray) - luma).max() <= 1


def test_rgba_alpha_is_resized_bicubically(tiny):
    rgb = to_pil(smooth(10, 12))
    alpha = to_pil(smooth(10, 12, channels=1, seed=5).expand(3, -1, -1)).convert('L')
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    out = upscale(rgba, size=(33, 21), model=tiny)
    assert out.mode == 'RGBA' and out.size == (21, 33)
    assert np.array_equal(np.asarray(out)[:, :, :3],
                          np.asarray(upscale(rgb, size=(33, 21), model=tiny)))
    expected = np.asarray(alpha.resize((21, 33), Image.BICUBIC)).astype(int)
    assert np.abs(np.asarray(out)[:, :, 3].astype(int) - expected).max() <= 1


def test_palette_becomes_rgb(tiny):
    pal = to_pil(smooth(10, 12)).convert('P')
    out = upscale(pal, scale=2, model=tiny)
    assert out.mode == 'RGB'
    assert np.array_equal(np.asarray(out), np.asarray(upscale(pal.convert('RGB'), scale=2,
                                                              model=tiny)))
    pal.info['transparency'] = 0
    assert upscale(pal, scale=2, model=tiny).mode == 'RGBA'


def test_16_bit_gray_png(tiny, tmp_path):
    values = np.rint(smooth(9, 11, channels=1)[0].numpy() * 65535).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / 'in.png')
    img = read_image(tmp_path / 'in.png')
    assert img.mode in ('I;16', 'I')
    out = upscale(img, scale=3, model=tiny)
    assert out.mode == img.mode and out.size == (33, 27)
    exact = upscale(torch.from_numpy(values.astype(np.float32) / 65535)[None], scale=3,
                    model=tiny)[0].numpy()
    assert np.array_equal(np.asarray(out), np.rint(exact * 65535))
    # The file path streams the same 16-bit values.
    upscale_file(tmp_path / 'in.png', tmp_path / 'out.png', scale=3, model=tiny)
    written = read_image(tmp_path / 'out.png')
    assert written.mode == img.mode and np.array_equal(np.asarray(written), np.asarray(out))


def test_exif_orientation_is_applied(tiny, tmp_path):
    img = to_pil(smooth(8, 13))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display
    img.save(tmp_path / 'rotated.png', exif=exif)
    rotated = read_image(tmp_path / 'rotated.png')
    upright = ImageOps.exif_transpose(rotated)
    assert upright.size == (8, 13)
    out = upscale(rotated, scale=2, model=tiny)
    assert out.size == (16, 26)
    assert np.array_equal(np.asarray(out), np.asarray(upscale(upright, scale=2, model=tiny)))


@pytest.mark.parametrize('suffix', ['.png', '.jpg'])
def test_icc_profile_is_kept(tiny, tmp_path, suffix):
    to_pil(smooth(8, 9)).save(tmp_path / 'in.png', icc_profile=ICC)
    assert upscale(read_image(tmp_path / 'in.png'), scale=2, model=tiny).info['icc_profile'] == ICC
    upscale_file(tmp_path / 'in.png', tmp_path / f'out{suffix}', size=(20, 15), model=tiny,
                 quality=90)
    out = read_image(tmp_path / f'out{suffix}')
    assert out.size == (15, 20) and out.info.get('icc_profile') == ICC
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(['in.png', f'out{suffix}'])


def test_file_png_equals_in_memory(tiny, tmp_path):
    rgba = to_pil(smooth(10, 12)).convert('RGBA')
    rgba.save(tmp_path / 'in.png')
    upscale_file(tmp_path / 'in.png', tmp_path / 'out.png', scale=(1.7, 2.2), model=tiny,
                 tile_rows=3, encoder_tile_rows=2)
    assert np.array_equal(np.asarray(read_image(tmp_path / 'out.png')),
                          np.asarray(upscale(rgba, scale=(1.7, 2.2), model=tiny)))


# -- the PNG writer ----------------------------------------------------------------------------

def read_png(data):
    """A minimal independent PNG reader for the 'Up'-filtered files PngStream writes."""
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack('>I', data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        assert struct.unpack('>I', data[pos + 8 + length:pos + 12 + length])[0] == \
            zlib.crc32(kind + body)
        chunks.append((kind, body))
        pos += 12 + length
    width, height, bits, color_type = struct.unpack('>IIBB', chunks[0][1][:10])
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[color_type]
    raw = zlib.decompress(b''.join(body for kind, body in chunks if kind == b'IDAT'))
    lines = np.frombuffer(raw, np.uint8).reshape(height, -1)
    assert (lines[:, 0] == 2).all()
    rows = np.cumsum(lines[:, 1:], axis=0, dtype=np.uint8)  # undo 'Up': running sum mod 256
    dtype = '>u2' if bits == 16 else np.uint8
    return rows.view(dtype).reshape(height, width, channels), [k for k, _ in chunks]


@pytest.mark.parametrize('channels, bits', [(1, 8), (2, 8), (3, 8), (4, 8), (1, 16), (3, 16),
                                            (4, 16)])
def test_png_stream_round_trip(channels, bits):
    rng = np.random.default_rng(channels * bits)
    image = rng.integers(0, 2**bits, (13, 7, channels), dtype=np.uint16 if bits == 16
                         else np.uint8)
    file = io.BytesIO()
    png = PngStream(file, 13, 7, channels, bits, icc_profile=ICC)
    for r0 in range(0, 13, 5):
        png.write(image[r0:r0 + 5])
    png.close()
    decoded, kinds = read_png(file.getvalue())
    assert np.array_equal(decoded, image)
    assert kinds[:2] == [b'IHDR', b'iCCP'] and kinds[-1] == b'IEND'
    if bits == 8 or channels == 1:  # what PIL reads back at full precision
        pil = np.asarray(read_image(io.BytesIO(file.getvalue())))
        assert np.array_equal(pil.reshape(image.shape), image)
    else:  # and what it reads at 8 bits only
        assert np.array_equal(read_png16(file.getvalue()), image)


def test_png_stream_refuses_missing_rows():
    png = PngStream(io.BytesIO(), 4, 3, 3, 8)
    png.write(np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(ValueError, match='1 rows'):
        png.close()


def test_the_shipped_weights_are_read_once(monkeypatch):
    module = sys.modules['liif_core.upscale']  # the package attribute is the function
    module._default_model.cache_clear()
    calls = []
    real = module.load_pretrained
    monkeypatch.setattr(module, 'load_pretrained', lambda: calls.append(1) or real())
    for _ in range(2):
        upscale(smooth(4, 5), scale=2)
    assert len(calls) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_device_leaves_the_callers_model_where_it_was(tiny):
    out = upscale(smooth(6, 7), scale=2, model=tiny, device='cuda')
    assert next(tiny.parameters()).device.type == 'cpu'
    torch.testing.assert_close(out, upscale(smooth(6, 7), scale=2, model=tiny),
                               rtol=0, atol=1e-4)


# -- normalisation -----------------------------------------------------------------------------

def test_upscale_normalises_by_the_checkpoints_data_norm(reference_model, tmp_path):
    """A checkpoint trained without normalisation (sub 0, div 1) is decoded with it by
    ``upscale``, ``liif upscale`` and ``render`` alike, not with the paper's (x - 0.5) / 0.5."""
    from liif_core.cli import main
    from liif_core.render import NO_DATA_NORM, PAPER_DATA_NORM
    path = tmp_path / 'no-norm.pth'
    liif_core.save_model(reference_model, path, data_norm=NO_DATA_NORM)
    model = load_model(path)
    assert model.data_norm == NO_DATA_NORM
    img = smooth(12, 10)
    ours = upscale(img, scale=2, model=model)
    expected = render(model, img, scale=2, data_norm=NO_DATA_NORM, bsize=None)
    assert expected.std() > 0.05  # not a blank image, which any normalisation could clamp to
    assert (ours - expected).abs().max() < 1e-5  # banded == whole, as for the paper's norm
    assert torch.equal(render(model, img, scale=2, bsize=None), expected)
    paper = render(model, img, scale=2, data_norm=PAPER_DATA_NORM, bsize=None)
    assert (paper - expected).abs().max() > 0.1
    to_pil(img).save(tmp_path / 'in.png')
    assert main(['upscale', str(tmp_path / 'in.png'), str(tmp_path / 'out.png'), '--scale', '2',
                 '--weights', str(path), '--device', 'cpu']) == 0
    assert np.array_equal(np.asarray(read_image(tmp_path / 'out.png')),
                          np.asarray(upscale(read_image(tmp_path / 'in.png'), scale=2,
                                             model=model)))
