"""`liif upscale` through a real subprocess: results, and one-line errors that leave no file.
Every case starts its own `python -m liif_core` (importing torch takes seconds), so all cases are
launched at once and awaited together.

Then, in-process: folders and several files, and the conventions of every command (progress
bars, `--debug`, `liif list`, `--version`).
"""
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liif_core import __version__, bands, load_model, upscale, upscale_file
from liif_core.cli import COMMANDS, main
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


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGHUP], ids=['SIGTERM', 'SIGHUP'])
def test_killed_run_leaves_no_file(workdir, tmp_path, signum):
    """SIGTERM or SIGHUP in the middle of decoding removes the temporary file, writes nothing
    and says why it stopped."""
    cmd = [sys.executable, '-m', 'liif_core', 'upscale', str(workdir / 'photo.png'),
           str(tmp_path / 'out.png'), '--size', '3000x4000', '--no-progress', *WEIGHTS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(tmp_path.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    names = [p.name for p in tmp_path.iterdir()]
    assert len(names) == 1 and names[0].endswith('.tmp'), 'decoding never started'
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum
    assert err.strip() == f'liif upscale: stopped by {signal.Signals(signum).name}', err
    assert not any(tmp_path.iterdir())


def _limit_address_space():
    resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))


@pytest.mark.parametrize('size, args', [((6, 8), ['--size', '1x100000000']),
                                        ((1, 1), ['--scale', '1e9'])], ids=['long', 'scale_1e9'])
def test_huge_jobs_under_a_memory_limit_fail_with_one_line(tmp_path, size, args):
    """Under a 6 GiB address-space limit (where such jobs once ended in a segmentation fault),
    a job over the limits is refused with one line, before anything is allocated for it."""
    Image.new('RGB', size[::-1], (90, 120, 200)).save(tmp_path / 'in.png')
    proc = subprocess.run([sys.executable, '-m', 'liif_core', 'upscale', str(tmp_path / 'in.png'),
                           str(tmp_path / 'out.png'), *args, *WEIGHTS], capture_output=True,
                          text=True, timeout=120, preexec_fn=_limit_address_space)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('liif upscale: error: ') \
        and 'over the limit' in lines[0], proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['in.png']


# ----------------------------------------------------------------------------------------------
# Folders and several files, in-process: `liif upscale IN... OUT_FOLDER`

@pytest.fixture
def photos(tmp_path):
    """A folder of two photos, a file that is no image, a hidden file and two sub-folders."""
    folder = tmp_path / 'photos'
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ('a.png', 'b.jpg'):
        Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).save(folder / name)
    (folder / 'notes.txt').write_text('not an image\n')
    (folder / '.hidden.png').write_text('skipped without a word\n')
    (folder / 'sub').mkdir()
    (folder / 'empty').mkdir()
    return folder


def test_upscale_a_folder_skips_what_it_cannot_read(photos, tmp_path, capsys):
    out = tmp_path / 'out' / 'deeper'  # created
    assert main(['upscale', str(photos), str(out), '--scale', '2', *WEIGHTS]) == 1
    printed = capsys.readouterr()
    assert printed.out == f'2 of 3 images upscaled into {out}, 1 skipped\n'
    assert printed.err == (f'liif upscale: skipped {photos / "notes.txt"}: not a readable image '
                           f"(cannot identify image file '{photos / 'notes.txt'}')\n")
    assert sorted(p.name for p in out.iterdir()) == ['a.png', 'b.jpg']
    single = tmp_path / 'single.png'
    upscale_file(photos / 'a.png', single, scale=2, model=load_model(REFERENCE_CKPT))
    assert np.array_equal(np.asarray(read_image(out / 'a.png')), np.asarray(read_image(single)))
    assert read_image(out / 'b.jpg').format == 'JPEG'


def test_upscale_several_files_into_a_folder(photos, tmp_path, capsys):
    out = tmp_path / 'out'
    assert main(['upscale', str(photos / 'a.png'), str(photos / 'b.jpg'), str(out),
                 '--size', '9x11', '--ext', 'png', '--no-progress', *WEIGHTS]) == 0
    assert capsys.readouterr().out == f'2 of 2 images upscaled into {out}\n'
    assert sorted(p.name for p in out.iterdir()) == ['a.png', 'b.png']
    assert read_image(out / 'b.png').size == (11, 9)


def test_a_large_output_is_announced_with_an_estimate(photos, tmp_path, capsys, monkeypatch):
    """An output of LARGE_OUTPUT_PIXELS or more (lowered here) is announced before decoding,
    and once its first band is done, the time the rest will take; smaller ones are not."""
    monkeypatch.setattr(bands, 'LARGE_OUTPUT_PIXELS', 40 * 30)
    out = tmp_path / 'large.png'
    assert main(['upscale', str(photos / 'a.png'), str(out), '--size', '40x30', '--tile', '10',
                 *WEIGHTS]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f'liif upscale: note: {out}: a 40x30 output, 0 megapixels; Ctrl-C stops '
                      'it and leaves no file')
    assert re.fullmatch(rf'liif upscale: note: {re.escape(str(out))}: about \d+ s to go '
                        r'\(at the rate of the first 10 of 40 rows\)', err[1]), err
    assert len(err) == 2
    assert main(['upscale', str(photos / 'a.png'), str(out), '--size', '40x29', '--tile', '10',
                 '--overwrite', *WEIGHTS]) == 0
    assert capsys.readouterr().err == ''


def test_progress_bar_only_on_a_terminal_and_never_with_no_progress(photos, tmp_path, capsys,
                                                                    monkeypatch):
    args = ['upscale', str(photos / 'a.png'), str(photos / 'b.jpg'), str(tmp_path / 'out'),
            '--scale', '2', '--overwrite', *WEIGHTS]
    assert main(args) == 0
    assert capsys.readouterr().err == ''  # captured: not a terminal
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True)
    assert main(args) == 0
    assert '2/2' in capsys.readouterr().err
    assert main(args + ['--no-progress']) == 0
    assert capsys.readouterr().err == ''


@pytest.mark.parametrize('args, message', [
    (['{photos}', '{photos}'], '{photos}/a.png would be overwritten by its own result; choose '
                               'another output folder or --ext, or pass --overwrite'),
    (['{photos}/a.png', '{photos}/a.png'], '{photos}/a.png would be overwritten by its own '
                                           'result; choose another output, or pass --overwrite'),
    (['{photos}/a.png', '{photos}/sub/a.png', '{tmp}/out'],
     'two inputs would both be written to {tmp}/out/a.png; give them different names'),
    (['{photos}/empty', '{tmp}/out'], '{photos}/empty: no images to upscale'),
    (['{photos}/a.png', '{tmp}/out.png', '--ext', 'png'],
     '--ext applies to an output folder; the output file names its format by its extension'),
    (['{photos}/a.png'], 'give an input and an output: liif upscale IN OUT, or IN... FOLDER'),
])
def test_upscale_refuses_before_writing(photos, tmp_path, capsys, args, message):
    (photos / 'sub' / 'a.png').write_bytes((photos / 'a.png').read_bytes())
    before = {p: p.read_bytes() for p in photos.rglob('*') if p.is_file()}
    fill = {'photos': photos, 'tmp': tmp_path}
    argv = ['upscale', *(a.format(**fill) for a in args), '--scale', '2', *WEIGHTS]
    assert main(argv) == 1
    assert capsys.readouterr().err == f'liif upscale: error: {message.format(**fill)}\n'
    assert {p: p.read_bytes() for p in photos.rglob('*') if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['photos']


def test_overwrite_replaces_the_input_when_asked(photos, capsys):
    path = photos / 'a.png'
    assert main(['upscale', str(path), str(path), '--scale', '2', '--overwrite', *WEIGHTS]) == 0
    assert read_image(path).size == (14, 10)


# ----------------------------------------------------------------------------------------------
# Conventions of every command

@pytest.mark.parametrize('argv', [[c, '--no-progress', '--debug', '--help'] for c in COMMANDS]
                         + [['data', 'fetch', 'samples', '--no-progress', '--help'],
                            ['data', '--no-progress', 'list', '--help']])
def test_every_command_takes_no_progress_and_debug(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 0 and capsys.readouterr().out.startswith('usage: liif ')


def test_list(tmp_path, capsys):
    (tmp_path / 'weights').mkdir()
    (tmp_path / 'weights' / 'rdn-liif.pth').write_bytes(b'')
    (tmp_path / 'standin' / 'train').mkdir(parents=True)
    assert main(['list', '--data-root', str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith('configs (liif train / liif test CONFIG):\n  cpu/ablation/')
    assert '\n  test/test-div2k-4\n' in out and '\n  train-div2k/train_rdn-liif\n' in out
    assert ('shipped weights (--weights NAME):\n'
            '  edsr_baseline_liif.standin       EDSR-baseline-LIIF trained on the 27 stand-in '
            'photos on a 2-core CPU (1,360 steps; the default until the long run continued it)\n'
            '  edsr_baseline_liif.standin_long  edsr_baseline_liif.standin continued for 13,600 '
            'steps on one CPU thread (default)\n') in out
    assert f'official checkpoints (liif data fetch NAME; --weights NAME), under {tmp_path}:' in out
    assert '\n  edsr_baseline_liif.div2k         absent   The official EDSR-baseline-LIIF' in out
    assert '\n  rdn_liif.div2k                   present  The official RDN-LIIF' in out
    assert f'datasets (liif data fetch NAME), under {tmp_path}:' in out
    assert '\n  standin              present  Stand-in' in out
    assert '\n  div2k                absent   DIV2K' in out


def test_old_weights_names_work_with_one_note(tmp_path, capsys):
    Image.new('RGB', (6, 5)).save(tmp_path / 'in.png')
    for old, new in (('edsr-baseline-liif-standin', 'edsr_baseline_liif.standin'),
                     ('edsr-baseline-liif-standin-long', 'edsr_baseline_liif.standin_long')):
        assert main(['upscale', str(tmp_path / 'in.png'), str(tmp_path / f'{old}.png'),
                     '--scale', '2', '--weights', old]) == 0
        assert capsys.readouterr().err == f"liif upscale: note: '{old}' is now named '{new}'\n"
        assert main(['upscale', str(tmp_path / 'in.png'), str(tmp_path / f'{new}.png'),
                     '--scale', '2', '--weights', new]) == 0
        assert capsys.readouterr().err == ''
        assert np.array_equal(np.asarray(read_image(tmp_path / f'{old}.png')),
                              np.asarray(read_image(tmp_path / f'{new}.png')))


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(['--version'])
    assert exit.value.code == 0 and capsys.readouterr().out == f'liif {__version__}\n'
