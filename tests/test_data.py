"""Image folders and the LIIF wrappers, checked against the arithmetic of the official code.

Expected crops, scales and flips are recomputed here with numpy and PIL directly (not through
``resize_fn`` or ``to_pixel_samples``), replaying the same seeded random draws in the order the
spec gives.
"""
import json
import os
import random
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from liif_core.data import (DATASETS, CorruptImageError, DatasetSpecError, ImageFolder,
                            PairedImageFolders, SRImplicitDownsampled, SRImplicitPaired,
                            SRImplicitUniformVaried, make_data, make_dataset, read_rgb,
                            with_data_root)

torch.set_num_threads(2)


def random_rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_folder(folder, sizes, seed=0, names=None):
    """PNG files with random pixels; returns the arrays in sorted-name order."""
    os.makedirs(folder, exist_ok=True)
    names = names or [f'{i:04d}.png' for i in range(len(sizes))]
    arrays = {}
    for i, (name, (h, w)) in enumerate(zip(names, sizes)):
        arrays[name] = random_rgb(h, w, seed + i)
        Image.fromarray(arrays[name]).save(os.path.join(folder, name))
    return [arrays[n] for n in sorted(arrays)]


def as_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)


def pil_bicubic(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.BICUBIC))


def centres(n: int) -> np.ndarray:
    """Pixel-centre coordinates of an axis of n pixels: -1 + (2i + 1) / n."""
    return -1 + (2 * np.arange(n) + 1) / n


# ----------------------------------------------------------------------------------------------
# Decoding any image file to RGB k/255

def test_read_rgb_converts_modes(tmp_path):
    rgb = random_rgb(6, 5, 1)
    gray = rgb[..., 0]
    cases = {
        'gray.png': (Image.fromarray(gray, 'L'), np.repeat(gray[..., None], 3, 2)),
        'rgba.png': (Image.fromarray(np.dstack([rgb, gray]), 'RGBA'), rgb),  # alpha dropped
        'la.png': (Image.fromarray(np.dstack([gray, gray]), 'LA'),
                   np.repeat(gray[..., None], 3, 2)),
    }
    palette = Image.fromarray(rgb).quantize(colors=8)
    cases['palette.png'] = (palette, np.asarray(palette.convert('RGB')))
    for name, (img, expected) in cases.items():
        img.save(tmp_path / name)
        out = read_rgb(str(tmp_path / name))
        assert out.dtype == np.uint8 and out.shape == (6, 5, 3), name
        np.testing.assert_array_equal(out, expected, err_msg=name)


def test_read_rgb_16bit_keeps_high_byte(tmp_path):
    values = np.array([[0, 255, 256, 1000], [32767, 32768, 65280, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / 'deep.png')  # a 16-bit grayscale PNG
    out = read_rgb(str(tmp_path / 'deep.png'))
    expected = np.array([[0, 0, 1, 3], [127, 128, 255, 255]], dtype=np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], expected)


def test_read_rgb_applies_exif_rotation(tmp_path):
    rgb = random_rgb(4, 7, 2)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: the stored image must be turned 90 degrees clockwise
    Image.fromarray(rgb).save(tmp_path / 'rotated.png', exif=exif)
    out = read_rgb(str(tmp_path / 'rotated.png'))
    np.testing.assert_array_equal(out, np.rot90(rgb, k=-1))


def test_float_values_are_k_over_255(tmp_path):
    rgb = write_folder(tmp_path / 'hr', [(5, 6)])[0]
    img = ImageFolder(str(tmp_path / 'hr'))[0]
    assert img.dtype == torch.float32 and img.shape == (3, 5, 6)
    torch.testing.assert_close(img, as_tensor(rgb), rtol=0, atol=0)


def test_corrupt_file_names_its_path(tmp_path):
    folder = tmp_path / 'hr'
    write_folder(folder, [(8, 8), (8, 8), (8, 8)])
    data = (folder / '0001.png').read_bytes()
    (folder / '0001.png').write_bytes(data[:len(data) // 2])  # truncated mid-stream
    dataset = ImageFolder(str(folder))
    dataset[0]
    with pytest.raises(CorruptImageError, match='0001.png'):
        dataset[1]
    with pytest.raises(CorruptImageError, match='0001.png'):
        ImageFolder(str(folder), cache='in_memory')


@pytest.mark.parametrize('cache', ['none', 'in_memory', 'bin'])
def test_skip_corrupt_substitutes_next_image_and_warns(tmp_path, cache):
    folder = tmp_path / 'hr'
    arrays = write_folder(folder, [(8, 8), (8, 9), (8, 10)])
    (folder / '0001.png').write_bytes(b'not an image at all')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        dataset = ImageFolder(str(folder), cache=cache, skip_corrupt=True)
        assert len(dataset) == 3
        torch.testing.assert_close(dataset[1], as_tensor(arrays[2]), rtol=0, atol=0)
        dataset[1]
    assert len([w for w in caught if '0001.png' in str(w.message)]) == 1  # warned once
    assert len(dataset.skipped) == 1 and '0001.png' in dataset.skipped[0]


def test_paired_skip_corrupt_keeps_pairs_aligned(tmp_path):
    lr = write_folder(tmp_path / 'lr', [(4, 4)] * 3, seed=10)
    hr = write_folder(tmp_path / 'hr', [(8, 8)] * 3, seed=20)
    (tmp_path / 'hr' / '0000.png').write_bytes(b'garbage')
    with pytest.warns(UserWarning, match='0000.png'):
        pair = PairedImageFolders(str(tmp_path / 'lr'), str(tmp_path / 'hr'), skip_corrupt=True)[0]
    torch.testing.assert_close(pair[0], as_tensor(lr[1]), rtol=0, atol=0)
    torch.testing.assert_close(pair[1], as_tensor(hr[1]), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------
# image-folder and paired-image-folders

def test_image_folder_order_first_k_repeat_and_split(tmp_path):
    folder = tmp_path / 'hr'
    arrays = write_folder(folder, [(4, 4)] * 4, names=['b.png', 'd.png', 'a.png', 'c.png'])
    (folder / '.hidden').write_text('not listed')
    dataset = ImageFolder(str(folder), first_k=3, repeat=2)
    assert [os.path.basename(p) for p in dataset.paths] == ['a.png', 'b.png', 'c.png']
    assert len(dataset) == 6
    torch.testing.assert_close(dataset[4], as_tensor(arrays[1]), rtol=0, atol=0)  # 4 % 3 = 1

    split = tmp_path / 'split.json'
    split.write_text(json.dumps({'train': ['d.png', 'a.png'], 'val': ['c.png']}))
    dataset = ImageFolder(str(folder), split_file=str(split), split_key='train')
    assert [os.path.basename(p) for p in dataset.paths] == ['d.png', 'a.png']
    torch.testing.assert_close(dataset[0], as_tensor(arrays[3]), rtol=0, atol=0)


def test_cache_modes_agree_and_bin_is_npy(tmp_path):
    folder = tmp_path / 'HR'
    write_folder(folder, [(5, 7), (6, 4)], names=['x.1.png', 'y.png'])
    Image.fromarray(random_rgb(3, 3, 9)[..., 0], 'L').save(folder / 'z.png')  # grayscale too
    plain = ImageFolder(str(folder))
    for cache in ('in_memory', 'bin'):
        other = ImageFolder(str(folder), cache=cache)
        for i in range(3):
            torch.testing.assert_close(other[i], plain[i], rtol=0, atol=0)
    bin_dir = tmp_path / '_bin_HR'
    assert sorted(os.listdir(bin_dir)) == ['x.npy', 'y.npy', 'z.npy']  # stem before first dot
    assert np.load(bin_dir / 'z.npy', allow_pickle=False).shape == (3, 3, 3)


def test_in_memory_under_torchrun_maps_one_shared_file(tmp_path, monkeypatch):
    """With several processes per machine, in_memory images live in one file that the first
    process writes and every process maps; items are unchanged, corrupt files are still
    skipped, and a second process reads the first one's file."""
    from liif_core.data import shared_cache
    folder = tmp_path / 'HR'
    arrays = write_folder(folder, [(5, 7), (6, 4), (3, 3)])
    (folder / '0001.png').write_bytes(b'garbage')
    shared = tmp_path / 'shm'
    shared.mkdir()
    monkeypatch.setattr(shared_cache, 'SHARED_DIR', str(shared))
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '2')
    monkeypatch.setattr(shared_cache.atexit, 'register', lambda *args: None)  # left to tmp_path
    first = ImageFolder(str(folder), cache='in_memory', skip_corrupt=True)
    (data_file,) = shared.glob('*/*.u8')
    assert data_file.stat().st_size == (5 * 7 + 3 * 3) * 3  # 8-bit RGB, no copy of the bad file
    second = ImageFolder(str(folder), cache='in_memory', skip_corrupt=True)
    assert list(shared.glob('*/*.u8')) == [data_file]
    for dataset in (first, second):
        assert all(isinstance(img, np.memmap) and img.filename == str(data_file)
                   for img in (dataset.images[0], dataset.images[2]))
        with pytest.warns(UserWarning, match='0001.png'):
            torch.testing.assert_close(dataset[1], as_tensor(arrays[2]), rtol=0, atol=0)
        torch.testing.assert_close(dataset[0], as_tensor(arrays[0]), rtol=0, atol=0)


def test_missing_folder_and_bad_cache(tmp_path):
    with pytest.raises(FileNotFoundError, match='liif data fetch'):
        ImageFolder(str(tmp_path / 'nowhere'))
    write_folder(tmp_path / 'hr', [(4, 4)])
    with pytest.raises(ValueError, match='cache'):
        ImageFolder(str(tmp_path / 'hr'), cache='pickle')


def test_paired_folders_pair_by_sorted_name(tmp_path):
    lr = write_folder(tmp_path / 'lr', [(4, 5), (3, 3)], names=['b.png', 'a.png'], seed=1)
    hr = write_folder(tmp_path / 'hr', [(8, 10), (6, 6)], names=['b.png', 'a.png'], seed=5)
    pairs = PairedImageFolders(str(tmp_path / 'lr'), str(tmp_path / 'hr'), repeat=2)
    assert len(pairs) == 4
    low, high = pairs[2]
    torch.testing.assert_close(low, as_tensor(lr[0]), rtol=0, atol=0)
    torch.testing.assert_close(high, as_tensor(hr[0]), rtol=0, atol=0)
    write_folder(tmp_path / 'hr3', [(8, 8)] * 3)
    with pytest.raises(ValueError, match='differ in size'):
        PairedImageFolders(str(tmp_path / 'lr'), str(tmp_path / 'hr3'))


# ----------------------------------------------------------------------------------------------
# sr-implicit-downsampled

class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        return self.items[idx]


def np_flips(img: np.ndarray, hflip: bool, vflip: bool, dflip: bool) -> np.ndarray:
    """The official augmentation on an (H, W, 3) array: hflip reverses H, vflip W, dflip swaps."""
    if hflip:
        img = img[::-1]
    if vflip:
        img = img[:, ::-1]
    if dflip:
        img = img.transpose(1, 0, 2)
    return np.ascontiguousarray(img)


@pytest.mark.parametrize('seed', range(6))
def test_downsampled_training_item_matches_spec(seed):
    H, W = 220, 250
    rgb = random_rgb(H, W, seed)
    wrapper = SRImplicitDownsampled(ListDataset([as_tensor(rgb)]), inp_size=48, scale_max=4,
                                    augment=True, sample_q=2304)
    random.seed(seed)
    np.random.seed(seed)
    item = wrapper[0]

    # Replay the draws: scale, crop corner, three flips (Python random), then queries (numpy).
    random.seed(seed)
    s = random.uniform(1, 4)
    w_hr = round(48 * s)
    x0, y0 = random.randint(0, H - w_hr), random.randint(0, W - w_hr)
    flips = [random.random() < 0.5 for _ in range(3)]
    hr = rgb[x0:x0 + w_hr, y0:y0 + w_hr]
    lr = hr if w_hr == 48 else pil_bicubic(hr, 48, 48)
    hr, lr = np_flips(hr, *flips), np_flips(lr, *flips)
    np.random.seed(seed)
    keep = np.random.choice(w_hr * w_hr, 2304, replace=False)
    rows, cols = np.divmod(keep, w_hr)

    torch.testing.assert_close(item['inp'], as_tensor(lr), rtol=0, atol=0)
    assert item['coord'].shape == (2304, 2) and item['cell'].shape == (2304, 2)
    np.testing.assert_array_equal(item['gt'].numpy(), hr[rows, cols].astype(np.float32) / 255)
    np.testing.assert_allclose(item['coord'][:, 0], centres(w_hr)[rows], atol=1e-6)
    np.testing.assert_allclose(item['coord'][:, 1], centres(w_hr)[cols], atol=1e-6)
    np.testing.assert_allclose(item['cell'], np.full((2304, 2), 2 / w_hr), rtol=1e-6)
    for key in ('inp', 'gt'):
        assert 0 <= item[key].min() and item[key].max() <= 1


def test_texture_tries_keeps_the_most_textured_of_its_draws():
    """Half flat, half noise: with 8 tries nearly every crop lands in the noisy half; with one
    try the draws are the official ones (same corners as a replay of Python's random)."""
    rgb = np.zeros((64, 256, 3), np.uint8)
    rgb[:, 128:] = random_rgb(64, 128, 5)
    image = ListDataset([as_tensor(rgb)])
    tries = SRImplicitDownsampled(image, inp_size=32, scale_min=2, texture_tries=8)
    one = SRImplicitDownsampled(image, inp_size=32, scale_min=2)
    random.seed(0)
    textured = [float(tries[0]['inp'].std()) > 0.05 for _ in range(50)]
    random.seed(0)
    uniform = [float(one[0]['inp'].std()) > 0.05 for _ in range(50)]
    assert sum(textured) >= 48 and sum(uniform) < 40
    random.seed(3)
    item = one[0]
    random.seed(3)
    random.uniform(2, 2)  # the scale's draw
    _, y0 = random.randint(0, 0), random.randint(0, 256 - 64)  # the corner's draws
    torch.testing.assert_close(item['inp'], as_tensor(pil_bicubic(rgb[:, y0:y0 + 64], 32, 32)),
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match='texture_tries must be a positive integer'):
        SRImplicitDownsampled(image, inp_size=32, texture_tries=0)


def test_downsampled_crop_uses_python_round_half_to_even():
    s = 50.5 / 48
    assert 48 * s == 50.5  # so round() sees an exact half
    wrapper = SRImplicitDownsampled(ListDataset([torch.rand(3, 60, 60)]), inp_size=48,
                                    scale_min=s)
    item = wrapper[0]
    assert item['gt'].shape[0] == 50 * 50  # half to even: 50, where floor(x + 0.5) gives 51


def test_downsampled_scale_one_keeps_the_crop():
    rgb = random_rgb(60, 60, 3)
    wrapper = SRImplicitDownsampled(ListDataset([as_tensor(rgb)]), inp_size=48, scale_min=1)
    random.seed(1)
    item = wrapper[0]
    hr = item['gt'].reshape(48, 48, 3).permute(2, 0, 1)  # no sample_q: all pixels, row-major
    torch.testing.assert_close(item['inp'], hr, rtol=0, atol=0)  # Resize short-circuit


def test_downsampled_test_mode_crop_arithmetic():
    # 81 / 2.7 is 29.999999999999996 in floats: the official + 1e-9 makes it 30.
    rgb = random_rgb(81, 100, 4)
    item = SRImplicitDownsampled(ListDataset([as_tensor(rgb)]), scale_min=2.7)[0]
    h_lr, w_lr = 30, 37  # floor(81/2.7 + 1e-9), floor(100/2.7 + 1e-9)
    h_hr, w_hr = round(h_lr * 2.7), round(w_lr * 2.7)  # 81, 100 (99.9 rounds up)
    assert (h_hr, w_hr) == (81, 100)
    torch.testing.assert_close(item['inp'], as_tensor(pil_bicubic(rgb, h_lr, w_lr)),
                               rtol=0, atol=0)
    np.testing.assert_array_equal(item['gt'].numpy(),
                                  rgb.reshape(-1, 3).astype(np.float32) / 255)

    # Integer scale: the HR is cropped at the top left to a multiple of the scale.
    rgb = random_rgb(50, 47, 5)
    item = SRImplicitDownsampled(ListDataset([as_tensor(rgb)]), scale_min=4)[0]
    assert item['inp'].shape == (3, 12, 11)
    np.testing.assert_array_equal(item['gt'].numpy(),
                                  rgb[:48, :44].reshape(-1, 3).astype(np.float32) / 255)
    np.testing.assert_allclose(item['cell'][0], [2 / 48, 2 / 44], rtol=1e-6)


def test_downsampled_rejects_small_images_and_large_sample_q():
    with pytest.raises(ValueError, match='smaller than'):
        SRImplicitDownsampled(ListDataset([torch.rand(3, 100, 300)]), inp_size=48,
                              scale_min=3)[0]
    with pytest.raises(ValueError, match='sample_q'):
        SRImplicitDownsampled(ListDataset([torch.rand(3, 10, 10)]), scale_min=2,
                              sample_q=101)[0]


# ----------------------------------------------------------------------------------------------
# sr-implicit-paired and sr-implicit-uniform-varied

def test_paired_random_crop_is_aligned():
    hr = random_rgb(120, 100, 6)
    lr = np.ascontiguousarray(hr[1::3, 1::3])  # a 3x "downscale" whose alignment we know
    wrapper = SRImplicitPaired(ListDataset([(as_tensor(lr), as_tensor(hr))]), inp_size=16)
    random.seed(3)
    item = wrapper[0]
    assert item['inp'].shape == (3, 16, 16) and item['gt'].shape == (48 * 48, 3)
    hr_crop = item['gt'].reshape(48, 48, 3).permute(2, 0, 1)
    torch.testing.assert_close(item['inp'], hr_crop[:, 1::3, 1::3], rtol=0, atol=0)
    random.seed(3)
    x0, y0 = random.randint(0, 40 - 16), random.randint(0, 33 - 16)
    torch.testing.assert_close(hr_crop, as_tensor(hr[3 * x0:3 * x0 + 48, 3 * y0:3 * y0 + 48]),
                               rtol=0, atol=0)


def test_paired_test_mode_crops_hr_to_lr_times_scale():
    lr, hr = random_rgb(10, 11, 7), random_rgb(21, 23, 8)  # scale 21 // 10 = 2
    item = SRImplicitPaired(ListDataset([(as_tensor(lr), as_tensor(hr))]))[0]
    torch.testing.assert_close(item['inp'], as_tensor(lr), rtol=0, atol=0)
    np.testing.assert_array_equal(item['gt'].numpy(),
                                  hr[:20, :22].reshape(-1, 3).astype(np.float32) / 255)
    np.testing.assert_allclose(item['cell'][0], [2 / 20, 2 / 22], rtol=1e-6)


def test_uniform_varied_sizes_spread_over_the_index():
    pairs = [(torch.rand(3, 8, 8), torch.rand(3, 32, 32)) for _ in range(5)]
    wrapper = SRImplicitUniformVaried(ListDataset(pairs), size_min=8, size_max=16)
    for idx, size in enumerate([8, 10, 12, 14, 16]):  # round(8 + 8 * idx / 4)
        item = wrapper[idx]
        assert item['gt'].shape == (size * size, 3)
        np.testing.assert_allclose(item['cell'][0], [2 / size, 2 / size], rtol=1e-6)
        torch.testing.assert_close(item['inp'], pairs[idx][0], rtol=0, atol=0)
    fixed = SRImplicitUniformVaried(ListDataset(pairs), size_min=8, size_max=16, gt_resize=16,
                                    sample_q=100)
    np.random.seed(0)
    assert fixed[0]['gt'].shape == (100, 3) and fixed[0]['cell'][0, 0] == pytest.approx(2 / 16)


# ----------------------------------------------------------------------------------------------
# Specs

def test_make_dataset_and_make_data(tmp_path):
    write_folder(tmp_path / 'load' / 'set' / 'HR', [(64, 64)] * 3)
    section = {
        'dataset': {'name': 'image-folder', 'args': {'root_path': './load/set/HR', 'repeat': 2}},
        'wrapper': {'name': 'sr-implicit-downsampled',
                    'args': {'inp_size': 16, 'scale_max': 4, 'sample_q': 64}},
        'batch_size': 2,
    }
    data = make_data(section, data_root=str(tmp_path / 'load'), first_k=2)
    assert isinstance(data, SRImplicitDownsampled) and len(data) == 4
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=2)))
    assert batch['inp'].shape == (2, 3, 16, 16) and batch['coord'].shape == (2, 64, 2)
    assert section['dataset']['args']['root_path'] == './load/set/HR'  # input left unchanged

    bare = make_data({'dataset': section['dataset']}, data_root=str(tmp_path / 'load'))
    assert isinstance(bare, ImageFolder)
    with pytest.raises(DatasetSpecError, match='known names: image-folder'):
        make_dataset({'name': 'image-folders', 'args': {}})
    with pytest.raises(DatasetSpecError, match='cannot be built'):
        make_dataset({'name': 'sr-implicit-paired', 'args': {'scale_max': 4}}, dataset=bare)
    assert set(DATASETS) == {'image-folder', 'paired-image-folders', 'sr-implicit-downsampled',
                             'sr-implicit-paired', 'sr-implicit-uniform-varied'}


def test_with_data_root_rewrites_only_load_paths():
    spec = {'args': {'root_path_1': './load/a', 'root_path_2': 'load/b', 'split_file': '/abs/s',
                     'first_k': 3, 'name': './load/not-a-path-arg'}}
    out = with_data_root(spec, 'data')
    assert out['args'] == {'root_path_1': os.path.join('data', 'a'),
                           'root_path_2': os.path.join('data', 'b'), 'split_file': '/abs/s',
                           'first_k': 3, 'name': './load/not-a-path-arg'}
    assert with_data_root(spec, None) == spec
