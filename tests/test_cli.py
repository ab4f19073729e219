"""`liif upscale` through a real subprocess: results, and one-line errors that leave no file.

Every case starts its own `python -m liif_core` (importing torch takes seconds), so all cases are
launched at once and awaited together.
"""
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liif_core import upscale
from liif_core.pretrained import load_pretrained

REFERENCE_CKPT = Path(__file__).parent / 'reference' / 'edsr_liif_reference.pth'
WEIGHTS = ['--weights', str(REFERENCE_CKPT)]

# name -> (input file, output file, extra arguments); inputs are made by `workdir` below.
CASES = {
    'ok_scale': ('photo.png', 'out.png', ['--scale', '1.5', *WEIGHTS]),
    'ok_size_jpeg': ('photo.png', 'out.jpg', ['--size', '7x20', '--quality', '80', *WEIGHTS]),
    'missing_input': ('nothing_here.png', 'out.png', ['--scale', '2', *WEIGHTS]),
    'not_an_image': ('notes.png', 'out.png', ['--scale', '2', *WEIGHTS]),
    'truncated_image': ('truncated.png', 'out.png', ['--scale', '2', *WEIGHTS]),
    'scale_zero': ('photo.png', 'out.png', ['--scale', '0', *WEIGHTS]),
    'scale_negative': ('photo.png', 'out.png', ['--scale=-2', *WEIGHTS]),
    'scale_nan': ('photo.png', 'out.png', ['--scale', 'nan', *WEIGHTS]),
    'scale_inf': ('photo.png', 'out.png', ['--scale', 'inf', *WEIGHTS]),
    'scale_not_a_number': ('photo.png', 'out.png', ['--scale', 'two', *WEIGHTS]),
    'size_zero': ('photo.png', 'out.png', ['--size', '0x10', *WEIGHTS]),
    'size_malformed': ('photo.png', 'out.png', ['--size', '10x', *WEIGHTS]),
    'too_large_for_png': ('photo.png', 'out.png', ['--scale', '1e9', *WEIGHTS]),
    'too_large_for_jpeg': ('photo.png', 'out.jpg', ['--size', '70000x10', *WEIGHTS]),
    'no_target': ('photo.png', 'out.png', WEIGHTS),
    'output_dir_missing': ('photo.png', 'missing_dir/out.png', ['--scale', '2', *WEIGHTS]),
    'unknown_output_format': ('photo.png', 'out.xyz', ['--scale', '2', *WEIGHTS]),
    'weights_not_a_checkpoint': ('photo.png', 'out.png', ['--scale', '2', '--weights',
                                                          'notes.png']),
    'weights_not_liif': ('photo.png', 'out.png', ['--scale', '2', '--weights', 'other.pth']),
    'weights_missing': ('photo.png', 'out.png', ['--scale', '2', '--weights', 'no-such.pth']),
    'ok_shipped_weights': ('photo.png', 'out.png', ['--scale', '3.5']),
    'device_unknown': ('photo.png', 'out.png', ['--scale', '2', '--device', 'abacus', *WEIGHTS]),
}


def read_image(path):
    with Image.open(path) as image:
        image.load()
    return image


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli')
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    photo.save(root / 'photo.png')
    (root / 'notes.png').write_text('not an image\n')
    big = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    big.save(root / 'big.png')
    (root / 'truncated.png').write_bytes((root / 'big.png').read_bytes()[:3000])
    torch.save({'epoch': 3, 'state': {'w': torch.zeros(2)}}, root / 'other.pth')
    return root


@pytest.fixture(scope='module')
def results(workdir):
    """Run every case concurrently, each in its own output folder: name -> (rc, out, err, dir)."""
    procs = {}
    for name, (inp, out, extra) in CASES.items():
        case_dir = workdir / name
        case_dir.mkdir()
        cmd = [sys.executable, '-m', 'liif_core', 'upscale', str(workdir / inp),
               str(case_dir / out), '--no-progress', *extra]
        procs[name] = (subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True), case_dir)
    done = {}
    for name, (proc, case_dir) in procs.items():
        out, err = proc.communicate(timeout=300)
        done[name] = (proc.returncode, out, err, case_dir)
    return done


def test_upscale_by_scale(results):
    rc, out, err, case_dir = results['ok_scale']
    assert rc == 0, err
    assert out.strip().endswith('9x12')
    assert [p.name for p in case_dir.iterdir()] == ['out.png']
    assert read_image(case_dir / 'out.png').size == (12, 9)


def test_shipped_weights_are_the_default(results, workdir):
    rc, out, err, case_dir = results['ok_shipped_weights']
    assert rc == 0, err
    got = np.asarray(read_image(case_dir / 'out.png'))
    torch.set_num_threads(2)
    want = np.asarray(upscale(read_image(workdir / 'photo.png'), scale=3.5,
                              model=load_pretrained()))
    assert got.shape == (21, 28, 3)
    assert np.abs(got.astype(int) - want).max() <= 1  # rounding of float noise across processes


def test_upscale_to_size_as_jpeg(results):
    rc, out, err, case_dir = results['ok_size_jpeg']
    assert rc == 0, err
    assert [p.name for p in case_dir.iterdir()] == ['out.jpg']
    image = read_image(case_dir / 'out.jpg')
    assert image.format == 'JPEG' and image.size == (20, 7)


@pytest.mark.parametrize('name', [n for n in CASES if not n.startswith('ok_')])
def test_bad_input_gives_one_line_and_no_file(results, name):
    rc, out, err, case_dir = results[name]
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('liif upscale: error: '), err
    assert not any(case_dir.rglob('*')), 'an output or temporary file was left behind'


def test_weights_message_names_the_reason(results):
    assert 'no such checkpoint file, nor the name of shipped weights' \
        in results['weights_missing'][2]
    assert 'not a LIIF checkpoint' in results['weights_not_liif'][2]


def test_killed_run_leaves_no_file(workdir, tmp_path):
    """SIGTERM in the middle of decoding removes the temporary file and writes nothing."""
    cmd = [sys.executable, '-m', 'liif_core', 'upscale', str(workdir / 'photo.png'),
           str(tmp_path / 'out.png'), '--size', '3000x4000', '--no-progress', *WEIGHTS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(tmp_path.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    names = [p.name for p in tmp_path.iterdir()]
    assert len(names) == 1 and names[0].endswith('.tmp'), 'decoding never started'
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert not any(tmp_path.iterdir())
