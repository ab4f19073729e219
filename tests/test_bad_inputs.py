"""Bad input, as a new or a hostile user gives it, through the CLI's `main(argv)` in-process and
through the library: each case ends in one line `liif CMD: error: ...` (exit 1), names what is
wrong and what to do, and leaves no file at the destination."""
import os
import pickle
import struct
import tempfile
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from liif_core import load_model, upscale, upscale_file
from liif_core.cli import main
from liif_core.imageio import read_source
from liif_core.png import read_png16

REFERENCE_CKPT = os.path.join(os.path.dirname(__file__), 'reference', 'edsr_liif_reference.pth')
WEIGHTS = ['--weights', REFERENCE_CKPT]
NO_GPU = f"no CUDA GPU is usable here (torch {torch.__version__}); use cpu"


class RunsCode:
    def __reduce__(self):
        return (os.system, ('echo pwned > "$PWNED"',))


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    """The inputs the cases name as {w}/...: a photo, HR images, configs and checkpoints."""
    w = tmp_path_factory.mktemp('bad')
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(w / 'photo.png')
    (w / 'hr').mkdir()
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(w / 'hr' / 'a.png')
    (w / 'nested' / 'x').mkdir(parents=True)  # images one level down, as datasets unpack
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(w / 'nested' / 'x'
                                                                             / 'a.png')
    (w / 'bad.yaml').write_text('test_dataset: [1, 2\neval_type: div2k-2\n')
    (w / 'evil.yaml').write_text('model: !!python/object/apply:os.system ["echo pwned"]\n')
    ckpt = torch.load(REFERENCE_CKPT, weights_only=True)
    ckpt['model']['sd']['encoder.head.0.weight'][0, 0, 0, 0] = float('nan')
    torch.save(ckpt, w / 'nan.pth')
    ckpt = torch.load(REFERENCE_CKPT, weights_only=True)
    ckpt['model']['args']['encoder_spec']['args']['n_feats'] = 10**7
    torch.save(ckpt, w / 'huge.pth')
    torch.save({'model': RunsCode()}, w / 'legacy.pth', _use_new_zipfile_serialization=False)
    (w / 'pickle.pth').write_bytes(pickle.dumps({'model': RunsCode()}))
    return w


# name -> (argv, exit status, the error line after 'liif CMD: error: '); {w}: the inputs,
# {o}: an empty folder for this case that must stay empty.
CASES = {
    'device_cpu_index': (['upscale', '{w}/photo.png', '{o}/out.png', '--scale', '2',
                          '--device', 'cpu:5'],
                         1, "device 'cpu:5': there is one CPU device; use cpu"),
    'device_meta': (['upscale', '{w}/photo.png', '{o}/out.png', '--scale', '2', '--device',
                     'meta'],
                    1, "device 'meta' holds no data, so nothing can be computed on it; use cpu "
                       'or cuda'),
    'device_nonsense_test': (['test', '--hr', '{w}/hr', '--scales', '2', '--device', 'abacus'],
                             1, "unknown device 'abacus'; use cpu, cuda or cuda:N"),
    'device_cuda_train': (['train', 'cpu/train_liif-tiny', '--save-dir', '{o}/run',
                           '--device', 'cuda'], 1, "device 'cuda': " + NO_GPU),
    'device_cuda_test': (['test', '--hr', '{w}/hr', '--scales', '2', '--device', 'cuda'],
                         1, "device 'cuda': " + NO_GPU),
    'threads_zero': (['train', 'cpu/train_liif-tiny', '--save-dir', '{o}/run', '--threads', '0'],
                     1, '--threads must be at least 1, got 0'),
    'yaml_syntax_test': (['test', '{w}/bad.yaml'],
                         1, "{w}/bad.yaml: not valid YAML: expected ',' or ']', but got ':' "
                            '(line 2, column 10); fix the file'),
    'yaml_python_tag_train': (['train', '{w}/evil.yaml', '--save-dir', '{o}/run'],
                              1, '{w}/evil.yaml: the tag !!python/object/apply:os.system (line 1, '
                                 'column 8) would run code; configs hold plain YAML only; fix the '
                                 'file'),
    'scales_nan': (['test', '--hr', '{w}/hr', '--scales', '2,nan', *WEIGHTS],
                   1, "--scales: bad scale 'nan': use positive numbers or ROWxCOL, "
                      'comma-separated, e.g. 2,3.5,2x3'),
    'scales_trailing_x': (['test', '--hr', '{w}/hr', '--scales', '2x', *WEIGHTS],
                          1, "--scales: bad scale '2x': use positive numbers or ROWxCOL, "
                             'comma-separated, e.g. 2,3.5,2x3'),
    'csv_in_missing_folder': (['test', '--hr', '{w}/hr', '--scales', '2', '--csv',
                               '{o}/missing/sweep.csv', *WEIGHTS],
                              1, '--csv {o}/missing/sweep.csv: no such folder {o}/missing; '
                                 'create it first'),
    'size_superscript': (['upscale', '{w}/photo.png', '{o}/out.png', '--size', '²x2', *WEIGHTS],
                         1, "--size must be HxW with positive integers (height first), got "
                            "'²x2'"),
    'output_is_input': (['upscale', '{w}/photo.png', '{w}/photo.png', '--scale', '2', *WEIGHTS],
                        1, '{w}/photo.png would be overwritten by its own result; choose another '
                           'output, or pass --overwrite'),
    'nan_weights': (['upscale', '{w}/photo.png', '{o}/out.png', '--scale', '2', '--weights',
                     '{w}/nan.pth'],
                    1, '{w}/nan.pth: NaN or infinite weights in encoder.head.0.weight: the '
                       'training run diverged or the file is damaged'),
    'args_that_do_not_fit': (['upscale', '{w}/photo.png', '{o}/out.png', '--scale', '2',
                              '--weights', '{w}/huge.pth'],
                             1, "{w}/huge.pth: the state dict does not fit the model 'liif': "
                                'wrong shapes: encoder.head.0.weight: checkpoint (64, 3, 3, 3), '
                                'model (10000000, 3, 3, 3); ...'),
    'hostile_legacy_pickle': (['upscale', '{w}/photo.png', '{o}/out.png', '--scale', '2',
                               '--weights', '{w}/legacy.pth'],
                              1, '{w}/legacy.pth: refused to load: the file holds objects other '
                                 'than tensors and plain containers, which could run code when '
                                 'unpickled; a LIIF checkpoint holds only those'),
    'hostile_bare_pickle': (['upscale', '{w}/photo.png', '{o}/out.png', '--scale', '2',
                             '--weights', '{w}/pickle.pth'],
                            1, '{w}/pickle.pth: not a PyTorch checkpoint (not a file written by '
                               'torch.save)'),
    'output_pixels': (['upscale', '{w}/photo.png', '{o}/out.png', '--size', '40000x40000',
                       *WEIGHTS],
                      1, 'a 40000x40000 output is 1600 megapixels, over the limit of 1074; pass '
                         '--no-limits (limits=False in Python) to lift it'),
    'output_side': (['upscale', '{w}/photo.png', '{o}/out.png', '--size', '1x16000000',
                     *WEIGHTS],
                    1, 'a 1x16000000 output has a side over the limit of 1048576 pixels; pass '
                       '--no-limits (limits=False in Python) to lift it'),
    'tiny_input_huge_scale': (['upscale', '{w}/photo.png', '{o}/out.png', '--scale', '1e5',
                               *WEIGHTS],
                              1, 'a 600000x800000 output is 480000 megapixels, over the limit '
                                 'of 1074; pass --no-limits (limits=False in Python) to lift it'),
    'ico_over_256': (['upscale', '{w}/photo.png', '{o}/out.ico', '--size', '300x300', *WEIGHTS],
                     1, '300x300 is too large for ICO, which holds at most 256 pixels per side'),
    'hr_folder_of_folders': (['test', '--hr', '{w}/nested', '--scales', '2', *WEIGHTS],
                             1, '{w}/nested: no images at its top level (subfolders are not '
                                'searched); give the folder that holds the image files, e.g. '
                                '{w}/nested/x'),
    'unknown_dataset': (['data', 'fetch', 'div3k', '--root', '{o}'],
                        1, "unknown dataset 'div3k'; known: ..."),
    'official_checkpoint_not_fetched': (['test', '--hr', '{w}/hr', '--scales', '2', '--weights',
                                         'rdn_liif.div2k', '--data-root', '{o}'],
                                        1, "{o}/weights/rdn-liif.pth: the official checkpoint "
                                           "'rdn_liif.div2k' is not downloaded; run `liif data "
                                           "fetch rdn_liif.div2k` --root {o}"),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_bad_input(name, work, tmp_path, capsys, monkeypatch):
    argv, status, message = CASES[name]
    if 'cuda' in argv and torch.cuda.is_available():
        pytest.skip('this machine has a GPU')
    monkeypatch.setenv('PWNED', str(tmp_path / 'pwned'))
    out = tmp_path / 'out'
    out.mkdir()
    fill = {'w': work, 'o': out}
    before = {p: p.stat().st_mtime_ns for p in work.rglob('*')}
    assert main([a.format(**fill) for a in argv]) == status
    err = capsys.readouterr().err
    line = f'liif {argv[0]}: error: ' + message.format(**fill)
    if line.endswith('...'):
        assert err.startswith(line[:-3]) and err.count('\n') == 1, err
    else:
        assert err == line + '\n'
    assert list(out.rglob('*')) == [], 'a file was left at the destination'
    assert {p: p.stat().st_mtime_ns for p in work.rglob('*')} == before, 'an input was touched'
    assert not (tmp_path / 'pwned').exists()


def test_debug_shows_the_traceback(work):
    with pytest.raises(ValueError, match="device 'meta' holds no data"):
        main(['upscale', str(work / 'photo.png'), str(work / 'out.png'), '--scale', '2',
              '--device', 'meta', '--debug'])


def test_unwritable_output_names_the_output_not_a_temporary_file(work, tmp_path, capsys,
                                                                  monkeypatch):
    def refuse(*args, **kwargs):  # as mkstemp fails in a folder without write permission
        raise PermissionError(13, 'Permission denied', str(tmp_path / '.out.png.x1y2.tmp'))

    monkeypatch.setattr(tempfile, 'mkstemp', refuse)
    assert main(['upscale', str(work / 'photo.png'), str(tmp_path / 'out.png'), '--scale', '2',
                 *WEIGHTS]) == 1
    assert capsys.readouterr().err == (f'liif upscale: error: {tmp_path / "out.png"}: cannot '
                                       'write the output (Permission denied)\n')


# The library: (call, exception, message) with the image and model of `library_inputs`.
LIBRARY_CASES = {
    'nan_tensor': (lambda img, m: upscale(torch.full((3, 4, 4), float('nan')), scale=2, model=m),
                   'the image tensor holds NaN or infinite values'),
    'tensor_in_0_255': (lambda img, m: upscale(torch.full((3, 4, 4), 200.0), scale=2, model=m),
                        r'image tensors hold values in \[0, 1\], got \[200, 200\]; divide by 255'),
    'empty_tensor': (lambda img, m: upscale(torch.zeros(3, 0, 4), scale=2, model=m),
                     r'the image tensor is empty: \(3, 0, 4\)'),
    'device_cpu_index': (lambda img, m: upscale(img, scale=2, model=m, device='cpu:5'),
                         "device 'cpu:5': there is one CPU device; use cpu"),
    'output_over_the_limit': (lambda img, m: upscale(img, size=(60000, 60000), model=m),
                              'a 60000x60000 output is 3600 megapixels, over the limit of 1074'),
    'folder_as_input': (lambda img, m: upscale_file(os.path.dirname(REFERENCE_CKPT), 'x.png',
                                                    scale=2, model=m),
                        'reference: a folder, not an image file'),
}


@pytest.fixture(scope='module')
def library_inputs():
    return Image.new('RGB', (5, 4), (10, 200, 30)), load_model(REFERENCE_CKPT)


@pytest.mark.parametrize('name', sorted(LIBRARY_CASES))
def test_library_bad_input(name, library_inputs):
    call, message = LIBRARY_CASES[name]
    with pytest.raises(ValueError, match=message):
        call(*library_inputs)


@pytest.mark.parametrize('scale', [np.float32(2), np.float64(2), torch.tensor(2.0),
                                   np.array(2.0), (np.int64(2), torch.tensor(2))])
def test_numpy_and_torch_scalar_scales(scale, library_inputs):
    image, model = library_inputs
    assert upscale(image, scale=scale, model=model).size == (10, 8)


def test_input_limit_and_lifting_it(work, tmp_path, capsys, monkeypatch):
    from liif_core import imageio
    monkeypatch.setattr(imageio, 'MAX_INPUT_PIXELS', 40)  # the photo has 48
    argv = ['upscale', str(work / 'photo.png'), str(tmp_path / 'out.png'), '--scale', '2',
            *WEIGHTS]
    assert main(argv) == 1
    # Refused from the file's header, before it is decoded.
    assert capsys.readouterr().err == (f'liif upscale: error: {work}/photo.png: the input is 6x8, '
                                       '0 megapixels, over the limit of 0; pass --no-limits '
                                       '(limits=False in Python) to lift it\n')
    assert list(tmp_path.iterdir()) == []
    assert main(argv + ['--no-limits']) == 0
    assert Image.open(tmp_path / 'out.png').size == (16, 12)


def test_a_profile_that_does_not_fit_the_result_is_dropped(library_inputs):
    from PIL import ImageCms
    image, model = library_inputs
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB')).tobytes()
    rgb = image.copy()
    rgb.info['icc_profile'] = srgb
    assert upscale(rgb, scale=2, model=model).info['icc_profile'] == srgb
    cmyk = image.convert('CMYK')
    cmyk.info['icc_profile'] = srgb[:16] + b'CMYK' + srgb[20:]  # the header's colour space
    out = upscale(cmyk, scale=2, model=model)
    assert out.mode == 'RGB' and 'icc_profile' not in out.info


def test_a_read_only_output_is_kept(work, tmp_path, capsys):
    out = tmp_path / 'out.png'
    out.write_bytes(b'keep me')
    out.chmod(0o444)
    assert main(['upscale', str(work / 'photo.png'), str(out), '--scale', '2', *WEIGHTS]) == 1
    assert capsys.readouterr().err == (f'liif upscale: error: {out}: the existing output is '
                                       'read-only; make it writable or choose another output\n')
    assert out.read_bytes() == b'keep me' and sorted(tmp_path.iterdir()) == [out]


def test_an_animated_input_is_said_to_lose_its_other_frames(tmp_path, capsys):
    frames = [Image.new('RGB', (6, 5), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / 'anim.gif', save_all=True, append_images=frames[1:])
    assert main(['upscale', str(tmp_path / 'anim.gif'), str(tmp_path / 'out.png'), '--scale',
                 '2', *WEIGHTS]) == 0
    printed = capsys.readouterr()
    assert printed.out == f'{tmp_path / "out.png"}: 10x12\n'
    assert printed.err == (f'liif upscale: note: {tmp_path / "anim.gif"}: only the first of its '
                           '3 frames is upscaled\n')


@pytest.mark.parametrize('size', [(96, 96), (40, 72)])
def test_ico_holds_the_size_reported(work, tmp_path, capsys, size):
    # PIL's default icon sizes would store 64x64 for 96x96.
    out = tmp_path / 'out.ico'
    assert main(['upscale', str(work / 'photo.png'), str(out), '--size', '{}x{}'.format(*size),
                 *WEIGHTS]) == 0
    assert capsys.readouterr().out == f'{out}: {size[0]}x{size[1]}\n'
    with Image.open(out) as image:
        assert image.size == size[::-1]


# -- 16-bit colour PNGs, which PIL reads at 8 bits ---------------------------------------------

# Adam7 passes: first row, first column, row step, column step (PNG specification, 8.2).
PASSES = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2),
          (1, 0, 2, 1))


def filtered_rows(image):
    """(n, m, C) uint16 -> PNG scanlines; row r uses filter type r % 5, so all five appear."""
    x = np.ascontiguousarray(image, '>u2').view(np.uint8).reshape(len(image), -1).astype(np.int32)
    bpp = 2 * image.shape[2]
    up = np.vstack([np.zeros_like(x[:1]), x[:-1]])
    left = np.pad(x, ((0, 0), (bpp, 0)))[:, :-bpp]
    up_left = np.pad(up, ((0, 0), (bpp, 0)))[:, :-bpp]
    p = left + up - up_left
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - up_left)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
    predictions = [0 * x, left, up, (left + up) // 2, paeth]
    return b''.join(bytes([r % 5]) + ((x[r] - predictions[r % 5][r]) % 256).astype(np.uint8)
                    .tobytes() for r in range(len(x)))


def png16(image, interlace=False, exif=None):
    """The bytes of a 16-bit PNG of (h, w, C) uint16, C = 2 (gray + alpha), 3 or 4."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I',
                                                                        zlib.crc32(kind + data))

    h, w, C = image.shape
    passes = PASSES if interlace else ((0, 0, 1, 1),)
    data = b''.join(filtered_rows(image[r0::dr, c0::dc]) for r0, c0, dr, dc in passes
                    if r0 < h and c0 < w)
    return (b'\x89PNG\r\n\x1a\n'
            + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 16, {2: 4, 3: 2, 4: 6}[C], 0, 0,
                                         int(interlace)))
            + (chunk(b'eXIf', exif) if exif else b'')
            + chunk(b'IDAT', zlib.compress(data)) + chunk(b'IEND', b''))


def deep(h, w, channels, seed=0):
    """Random 16-bit values: their low bytes are what an 8-bit reader loses."""
    return np.random.default_rng(seed).integers(0, 2**16, (h, w, channels), dtype=np.uint16)


@pytest.mark.parametrize('channels', [2, 3, 4])
@pytest.mark.parametrize('interlace', [False, True])
def test_16_bit_png_reader_undoes_every_filter(tmp_path, channels, interlace):
    image = deep(11, 13, channels, seed=channels)
    (tmp_path / 'deep.png').write_bytes(png16(image, interlace))
    assert np.array_equal(read_png16((tmp_path / 'deep.png').read_bytes()), image)
    # PIL reads the same file to its high bytes: the test's encoder is a valid PNG writer.
    with Image.open(tmp_path / 'deep.png') as pil:
        high = np.asarray(pil)
    if channels == 2:  # PIL: gray + alpha as RGBA
        high = high[:, :, [0, 3]]
    assert np.array_equal(high, image >> 8)


def test_16_bit_png_reader_leaves_other_pngs_to_pil_and_refuses_short_data(tmp_path):
    Image.new('RGB', (4, 3)).save(tmp_path / 'rgb8.png')
    assert read_png16((tmp_path / 'rgb8.png').read_bytes()) is None
    data = png16(deep(5, 6, 3))
    start = data.index(b'IDAT') - 4  # the chunk's length
    body = zlib.compress(b'\x00' * 20)  # fewer bytes than 5 rows of 6 pixels
    short = data[:start] + struct.pack('>I', len(body)) + b'IDAT' + body \
        + struct.pack('>I', zlib.crc32(b'IDAT' + body)) + data[-12:]  # IEND
    with pytest.raises(ValueError, match='image data end after 20 of'):
        read_png16(short)


def test_a_16_bit_png_is_turned_upright(tmp_path):
    image = deep(5, 8, 3)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display
    (tmp_path / 'rotated.png').write_bytes(png16(image, exif=exif.tobytes()))
    source, frames = read_source(tmp_path / 'rotated.png')
    values = np.rint(source.values.permute(1, 2, 0).numpy() * 65535).astype(np.uint16)
    assert source.bits == 16 and frames == 1
    assert np.array_equal(values, np.rot90(image, -1))
    with Image.open(tmp_path / 'rotated.png') as pil:
        assert np.array_equal(np.asarray(ImageOps.exif_transpose(pil)), values >> 8)


def test_16_bit_rgb_png_stays_16_bit(tmp_path, capsys):
    """x1 with the shipped weights: close to the input, and the very numbers of the 16-bit
    in-memory path, which an 8-bit read of the input would not give."""
    coarse = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(4)) * 0.8 + 0.1
    smooth = F.interpolate(coarse, size=(24, 28), mode='bicubic', align_corners=False)[0]
    image = np.rint(smooth.clamp(0, 1).permute(1, 2, 0).numpy() * 65535).astype(np.uint16)
    (tmp_path / 'in.png').write_bytes(png16(image))
    assert main(['upscale', str(tmp_path / 'in.png'), str(tmp_path / 'out.png'), '--scale',
                 '1']) == 0
    data = (tmp_path / 'out.png').read_bytes()
    assert data[24:26] == bytes([16, 2])  # IHDR: bit depth 16, colour type RGB
    out = read_png16(data)
    assert np.array_equal(out, upscale(image, scale=1))
    assert not np.array_equal(out, upscale((image >> 8).astype(np.uint8), scale=1)
                              .astype(np.uint16) * 257)
    assert (out % 257 != 0).mean() > 0.9  # not 8-bit values scaled up
    assert np.abs(out / 65535 - image / 65535).mean() < 1 / 255
    assert capsys.readouterr().out == f'{tmp_path / "out.png"}: 24x28\n'
