"""Hostile and careless use beyond bad arguments: other users on the machine, planted files,
servers that lie, decompression bombs, two runs in one folder, a resume with another config,
killed processes. Each case ends in one line (or is refused before any work), loses no file,
and leaves nothing another user can read or plant. In process where it can be, in a subprocess
where it must (locks held by another process, memory limits, SIGKILL)."""
import json
import os
import re
import signal
import stat
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from liif_core.data import ImageFolder, folders, shared_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, 'PYTHONPATH': ROOT}


def write_images(folder, sizes, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = []
    for i, (h, w) in enumerate(sizes):
        arrays.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        Image.fromarray(arrays[-1]).save(folder / f'{i:04d}.png')
    return arrays


def as_tensor(rgb):
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255


# -- the torchrun in_memory cache in shared memory ---------------------------------------------

@pytest.fixture
def shm(tmp_path, monkeypatch):
    """A stand-in for /dev/shm, and the environment of one of two torchrun processes."""
    shared = tmp_path / 'shm'
    shared.mkdir(mode=0o1777)
    monkeypatch.setattr(shared_cache, 'SHARED_DIR', str(shared))
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '2')
    monkeypatch.setenv('MASTER_PORT', '29555')
    monkeypatch.setattr(shared_cache.atexit, 'register', lambda *args: None)  # left to tmp_path
    return shared


def test_shared_images_are_private_to_the_user(tmp_path, shm):
    arrays = write_images(tmp_path / 'HR', [(5, 7), (4, 4)])
    dataset = ImageFolder(str(tmp_path / 'HR'), cache='in_memory')
    private = shm / f'liif-{os.getuid()}'
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    modes = {p.name.split('.', 1)[1]: stat.S_IMODE(p.stat().st_mode) for p in private.iterdir()}
    assert modes == {'u8': 0o600, 'json': 0o600, 'lock': 0o600, 'users': 0o600}
    torch.testing.assert_close(dataset[0], as_tensor(arrays[0]), rtol=0, atol=0)


@pytest.mark.parametrize('owner, mode', [(12345, 0o700), ('me', 0o777)])
def test_a_planted_shared_folder_is_never_read(tmp_path, shm, owner, mode):
    """Another user's folder at the private name (or one others can write into), holding a
    white image set: each process reads the images itself instead, with a warning."""
    arrays = write_images(tmp_path / 'HR', [(5, 7)])
    private = shm / f'liif-{os.getuid()}'
    private.mkdir()
    os.chmod(private, mode)
    if owner != 'me':
        if os.getuid() != 0:
            pytest.skip('making a folder of another user needs root')
        os.chown(private, owner, -1)
    for name in ('images-x.u8', 'images-x.json'):
        (private / name).write_bytes(b'\xff' * 105)
    with pytest.warns(UserWarning, match='not a folder private to this user'):
        dataset = ImageFolder(str(tmp_path / 'HR'), cache='in_memory')
    torch.testing.assert_close(dataset[0], as_tensor(arrays[0]), rtol=0, atol=0)
    assert not isinstance(dataset.images[0], np.memmap)


def test_a_set_whose_index_does_not_fit_is_rewritten(tmp_path, shm):
    """A set left half-written, or edited, is decoded again, not trusted."""
    arrays = write_images(tmp_path / 'HR', [(5, 7), (4, 4)])
    ImageFolder(str(tmp_path / 'HR'), cache='in_memory')
    (index,) = (shm / f'liif-{os.getuid()}').glob('*.json')
    (data,) = (shm / f'liif-{os.getuid()}').glob('*.u8')
    index.write_text(index.read_text().replace('[0, [5, 7, 3]]', '[90000, [5, 7, 3]]'))
    data.write_bytes(b'\xff' * data.stat().st_size)  # what an edit would leave
    second = ImageFolder(str(tmp_path / 'HR'), cache='in_memory')
    for i, array in enumerate(arrays):
        torch.testing.assert_close(second[i], as_tensor(array), rtol=0, atol=0)


# Another process of the job: holds the set's users lock, as a process mapping it does.
HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_SH)
print('holding', flush=True)
time.sleep(600)
"""


def test_a_killed_jobs_set_is_deleted_by_the_next_start_and_a_live_one_kept(tmp_path, shm,
                                                                             monkeypatch):
    write_images(tmp_path / 'HR', [(5, 7)])
    exit_handlers = []
    monkeypatch.setattr(shared_cache.atexit, 'register',
                        lambda *args: exit_handlers.append(args))
    ImageFolder(str(tmp_path / 'HR'), cache='in_memory')
    private = shm / f'liif-{os.getuid()}'
    before = sorted(p.name for p in private.iterdir())
    (users,) = private.glob('*.users')
    holder = subprocess.Popen([sys.executable, '-c', HOLDER, str(users)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == 'holding\n'
        os.close(exit_handlers[0][1])  # this process is gone; the other still maps the set
        shared_cache._clean_unused(str(private))  # a new job starts
        assert sorted(p.name for p in private.iterdir()) == before
    finally:
        holder.send_signal(signal.SIGKILL)  # no exit handler runs
        holder.wait()
    assert len(before) == 4
    shared_cache._clean_unused(str(private))
    assert list(private.iterdir()) == []


# -- image folders -----------------------------------------------------------------------------

def test_an_image_folder_lists_no_temporary_file_and_decodes_every_file(tmp_path):
    """A killed `liif data fetch` leaves NAME.png.<pid>.tmp (older versions) or a hidden
    temporary file, a killed download NAME.part: none is an image of the set. A stray .npy is
    decoded as any file is (and fails as one), never loaded as an array."""
    arrays = write_images(tmp_path / 'HR', [(4, 4)])
    for name in ('0000.png.4242.tmp', '.0000.png.k3j.4242@host.tmp', 'big.zip.part'):
        (tmp_path / 'HR' / name).write_bytes(b'half')
    dataset = ImageFolder(str(tmp_path / 'HR'))
    assert [os.path.basename(p) for p in dataset.paths] == ['0000.png']
    torch.testing.assert_close(dataset[0], as_tensor(arrays[0]), rtol=0, atol=0)
    from liif_core.evaluate import load_images  # what `liif test --hr` scores
    assert [name for name, _ in load_images(str(tmp_path / 'HR'))] == ['0000.png']
    with pytest.raises(ValueError, match=r'^crop must be a whole number of pixels >= 1, got 0$'):
        load_images(str(tmp_path / 'HR'), crop=0)
    np.save(tmp_path / 'HR' / 'stray.npy', np.full((4, 4, 3), 255, np.uint8))
    for cache in ('none', 'bin'):
        with pytest.raises(folders.CorruptImageError, match='stray.npy: cannot decode image'):
            ImageFolder(str(tmp_path / 'HR'), cache=cache)[1]


# -- decoders bounded before they allocate -----------------------------------------------------

def png(width, height, bits, color_type, idat, interlace=0):
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data)))
    ihdr = struct.pack('>IIBBBBB', width, height, bits, color_type, 0, 0, interlace)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', idat) + chunk(b'IEND', b'')


def bomb(inflated_mib):
    """A 16-bit RGB PNG declared 2x2 whose image data inflate to ``inflated_mib`` MiB: one
    compressed MiB of zeros, repeated (a full flush makes every later MiB compress alike)."""
    z = zlib.compressobj(9)
    block = b'\0' * 2**20
    first = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)
    again = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)
    return png(2, 2, 16, 2, first + again * (inflated_mib - 1) + z.flush())


# Reads each file named after the limit, in a process whose address space may grow by at most
# 512 MiB more than it has once everything is imported; prints each outcome.
BOUNDED = '''
import resource, sys
from liif_core.imageio import read_source
with open('/proc/self/status') as f:
    size = next(int(l.split()[1]) * 1024 for l in f if l.startswith('VmSize'))
resource.setrlimit(resource.RLIMIT_AS, (size + 2**29, resource.RLIM_INFINITY))
for path in sys.argv[1:]:
    try:
        read_source(path, limits=True)
        print('read')
    except ValueError as e:
        print(e)
'''


def test_bombs_are_refused_within_a_memory_limit(tmp_path):
    """3 MB declared 2x2 inflating to 3 GiB (inflated whole, it took 6.6 GB); a 12000x12000
    16-bit PNG, over the input limit (decoded before the check, it took 6 GB)."""
    (tmp_path / 'bomb.png').write_bytes(bomb(3072))
    # Refused from its header: the data need not be there.
    (tmp_path / 'huge.png').write_bytes(png(12000, 12000, 16, 2, zlib.compress(b'\0' * 72001)))
    out = subprocess.run([sys.executable, '-c', BOUNDED, str(tmp_path / 'bomb.png'),
                          str(tmp_path / 'huge.png')], capture_output=True, text=True, env=ENV,
                         timeout=120)
    assert out.stderr == '' and out.stdout.splitlines() == [
        f'{tmp_path}/bomb.png: not a readable image (image data inflate to more than the 26 '
        'bytes its header declares (a decompression bomb?))',
        f'{tmp_path}/huge.png: the input is 12000x12000, 144 megapixels, over the limit of 134; '
        'pass --no-limits (limits=False in Python) to lift it']


# -- training runs: one writer, the same run resumed, every value checked first ---------------

from test_train import RandomCrops, make_config, smooth_images  # noqa: E402

from liif_core import load_model  # noqa: E402
from liif_core.checkpoint import CheckpointError  # noqa: E402
from liif_core.render import NO_DATA_NORM, PAPER_DATA_NORM  # noqa: E402
from liif_core.train import train  # noqa: E402
from liif_core.train_config import ConfigError  # noqa: E402
from liif_core.train_state import RunFolderBusy, hold_save_dir  # noqa: E402

REFERENCE_CKPT = os.path.join(ROOT, 'tests', 'reference', 'edsr_liif_reference.pth')


def tiny_run(config, save_dir, **kwargs):
    torch.set_num_threads(1)
    images = smooth_images(3)
    kwargs.setdefault('train_data', RandomCrops(images))
    kwargs.setdefault('val_data', RandomCrops(images, repeat=2))
    return train(config, save_dir, device='cpu', num_workers=kwargs.pop('workers', 0),
                 progress=False, log=lambda line: None, **kwargs)


@pytest.fixture(scope='module')
def one_epoch(tmp_path_factory):
    """A run of one epoch (of two planned), its files kept to compare with."""
    save_dir = tmp_path_factory.mktemp('run')
    tiny_run(make_config(epoch_max=1), save_dir)
    return save_dir


def snapshot(folder):
    """Every file of a run but the lock (which names its last holder)."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name != '.writer.lock'}


def copy_run(source, target):
    target.mkdir()
    for name, data in snapshot(source).items():
        (target / name).write_bytes(data)
    return target


def test_checkpoints_record_their_normalisation(one_epoch, tmp_path):
    """Every checkpoint written by training says how its inputs were normalised, and
    load_model exposes it; official files without the key get the paper's."""
    ckpt = torch.load(one_epoch / 'epoch-last.pth', weights_only=True)
    assert ckpt['data_norm'] == make_config()['data_norm']
    assert load_model(one_epoch / 'epoch-last.pth').data_norm == make_config()['data_norm']
    assert 'data_norm' not in torch.load(REFERENCE_CKPT, weights_only=True)
    assert load_model(REFERENCE_CKPT).data_norm == PAPER_DATA_NORM
    tiny_run(make_config(epoch_max=1, data_norm=None), tmp_path / 'raw')
    assert load_model(tmp_path / 'raw' / 'epoch-last.pth').data_norm == NO_DATA_NORM


@pytest.mark.parametrize('change, named', [
    ({'model': {'name': 'liif', 'args': {
        'encoder_spec': {'name': 'edsr-baseline',
                         'args': {'n_resblocks': 1, 'n_feats': 16, 'no_upsampling': True}},
        'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [16]}}}}},
     'model.args.encoder_spec.args.n_feats (8 in the checkpoint, 16 in the config)'),
    ({'data_norm': None},
     "data_norm.inp.div ([0.5] in the checkpoint, [1] in the config); data_norm.inp.sub"),
    ({'optimizer': {'name': 'adam', 'args': {'lr': 1e-4}}},
     'optimizer.args.lr (0.001 in the checkpoint, 0.0001 in the config); to continue with '
     'the new optimizer settings on purpose, pass --new-optimizer (new_optimizer=True)'),
    ({'epoch_max': 1},
     'the run has trained 1 epochs, epoch_max is 1: nothing left to train; raise epoch_max '
     '(--epochs) to train further'),
])
def test_a_resume_with_another_config_is_refused_and_changes_nothing(one_epoch, tmp_path,
                                                                     change, named):
    run = copy_run(one_epoch, tmp_path / 'run')
    config = {**make_config(epoch_max=2), **change}
    with pytest.raises(ConfigError, match='^' + re.escape(f'{run}/epoch-last.pth: ')
                       + '.*' + re.escape(named)):
        tiny_run(config, run, resume=True)
    assert snapshot(run) == snapshot(one_epoch)  # config.yaml and every checkpoint as they were


def test_new_optimizer_settings_on_purpose(one_epoch, tmp_path):
    """The new lr, decayed by the milestone already passed (epoch 1, gamma 0.5), as if the
    run had used it from the start; Adam's moments kept."""
    run = copy_run(one_epoch, tmp_path / 'run')
    tiny_run(make_config(epoch_max=2, lr=1e-4), run, resume=True, new_optimizer=True)
    log = [json.loads(line) for line in (run / 'log.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in log] == [1, 2] and log[1]['lr'] == pytest.approx(0.5e-4)
    ckpt = torch.load(run / 'epoch-last.pth', weights_only=True)
    assert ckpt['optimizer']['args'] == {'lr': 1e-4}
    assert yaml.safe_load((run / 'config.yaml').read_text())['optimizer']['args'] == {'lr': 1e-4}


class CodePickle:
    def __reduce__(self):
        return (os.system, ('echo pwned',))


@pytest.fixture(scope='module')
def bad_checkpoints(tmp_path_factory, one_epoch):
    folder = tmp_path_factory.mktemp('bad')
    ckpt = torch.load(one_epoch / 'epoch-last.pth', weights_only=True)
    torch.save({'model': ckpt['model']}, folder / 'weights-only.pth')
    torch.save({**ckpt, 'epoch': '3'}, folder / 'epoch-text.pth')
    torch.save({**ckpt, 'optimizer': {'name': 'adam', 'args': {'lr': 1e-3}, 'sd': {'state': 1}}},
               folder / 'optimizer-damaged.pth')
    torch.save({**ckpt, 'rng': CodePickle()}, folder / 'code.pth')
    (folder / 'a-folder.pth').mkdir()
    return folder


@pytest.mark.parametrize('name, message', [
    ('weights-only.pth', 'cannot resume from it: it holds weights but no optimizer state '
                         '(shipped or released weights are such files); to start a new run '
                         'from its weights, set `init: {p}` in the config'),
    ('epoch-text.pth', "cannot resume from it: its epoch is '3', not a whole number >= 1"),
    ('optimizer-damaged.pth', 'cannot resume from it: its optimizer state is damaged'),
    ('code.pth', 'refused to load: the file holds objects other than tensors and plain '
                 'containers, which could run code when unpickled; a LIIF checkpoint holds '
                 'only those'),
    ('a-folder.pth', 'a folder, not a checkpoint file'),
])
def test_resuming_from_an_unusable_checkpoint_is_one_line(bad_checkpoints, tmp_path, name,
                                                          message):
    path = bad_checkpoints / name
    with pytest.raises(ValueError) as error:
        tiny_run(make_config(epoch_max=3, resume=str(path)), tmp_path / 'new')
    assert str(error.value).startswith(f'{path}: ' + message.format(p=path))
    assert '\n' not in str(error.value) and 'weights_only' not in str(error.value)
    assert not (tmp_path / 'new').exists()


def test_one_writer_per_run_folder(tmp_path):
    """A second run on a folder being written is refused, naming the first; the lock file a
    run leaves behind (ended or killed: the kernel drops the lock) holds no one back."""
    with hold_save_dir(tmp_path, True):
        with pytest.raises(RunFolderBusy, match=f'^{tmp_path}: another training run is writing '
                                                f'to it \\(pid {os.getpid()} on .*\\); wait for '
                                                'it to end, or choose another --save-dir$'):
            tiny_run(make_config(epoch_max=1), tmp_path)
        assert not (tmp_path / 'epoch-last.pth').exists()
    tiny_run(make_config(epoch_max=1), tmp_path)
    assert len((tmp_path / 'log.jsonl').read_text().splitlines()) == 1


@pytest.mark.parametrize('change, message', [
    ({'eval_type': 'div2k'}, "eval_type must be 'div2k-N', 'benchmark-N' or absent, got 'div2k'"),
    ({'optimizer': {'name': 'adam', 'args': {'lr': 1e-4, 'beta': 0.9}}},
     "optimizer.args: Adam.__init__() got an unexpected keyword argument 'beta'"),
    ({'optimizer': {'name': 'adam', 'args': [1e-4]}}, 'optimizer.args must be a mapping'),
    ({'optimizer': {'name': 'adamw', 'args': {}}}, "optimizer.name must be one of adam, sgd"),
    ({'optimizer': {'name': 'adam', 'args': {'lr': 1e300}}},
     'optimizer.args.lr must be a number in [0, 10], got 1e+300'),
    ({'multi_step_lr': {'milestones': [1], 'gamma': 0.5, 'step': 3}},
     "multi_step_lr: MultiStepLR.__init__() got an unexpected keyword argument 'step'"),
    ({'data_norm': {'inp': {'sub': [0.5], 'div': [0]}, 'gt': {'sub': [0.5, 1], 'div': [1]}}},
     'data_norm.inp.div must be a list of 1 or 3 finite numbers other than 0, got [0]; '
     'data_norm.gt.sub must be a list of 1 or 3 finite numbers, got [0.5, 1]'),
    ({'eval_bsize': '30000'}, "eval_bsize must be an integer >= 1, got '30000'"),
])
def test_every_config_value_is_checked_before_anything_runs(tmp_path, change, message):
    with pytest.raises(ConfigError, match='^training config: ' + re.escape(message)):
        tiny_run({**make_config(), **change}, tmp_path / 'run')
    assert not (tmp_path / 'run').exists()


def test_scale_max_must_be_finite():
    from liif_core.data import SRImplicitDownsampled
    with pytest.raises(ValueError, match=r'need finite numbers 0 < scale_min <= scale_max, got '
                                         r'1, inf'):
        SRImplicitDownsampled(None, scale_max=float('inf'))


def test_a_validation_set_of_mixed_sizes_is_refused_before_the_first_step(tmp_path):
    from liif_core.data import SRImplicitPaired, PairedImageFolders
    write_images(tmp_path / 'lr', [(4, 4), (5, 4)])
    write_images(tmp_path / 'hr', [(8, 8), (10, 8)])
    val = SRImplicitPaired(PairedImageFolders(str(tmp_path / 'lr'), str(tmp_path / 'hr')))
    with pytest.raises(ConfigError, match=r'^val_dataset: batch_size 4 batches whole images, '
                                          r'which differ in size \(8x8 and 10x8, ...\); set '):
        tiny_run(make_config(), tmp_path / 'run', val_data=val)
    assert not (tmp_path / 'run' / 'log.jsonl').exists()


class Unreadable(RandomCrops):
    def __getitem__(self, idx):
        raise folders.CorruptImageError(f'/data/{idx:04d}.png: cannot decode image (truncated)')


def test_a_data_error_in_a_worker_is_one_line(tmp_path):
    with pytest.raises(folders.CorruptImageError) as error:
        tiny_run(make_config(), tmp_path / 'run', workers=1,
                 train_data=Unreadable(smooth_images(3)))
    assert str(error.value) in {f'/data/{i:04d}.png: cannot decode image (truncated)'
                                for i in range(12)}


# -- the library API refuses what the command line refuses -------------------------------------

from liif_core import upscale, upscale_file  # noqa: E402


@pytest.fixture(scope='module')
def reference_model():
    torch.set_num_threads(1)
    return load_model(REFERENCE_CKPT)


def test_shrinking_is_antialiased_and_runs_no_model(reference_model):
    """LIIF samples points: shrinking with it aliases like nearest neighbour. An output
    smaller than the input along both axes is the antialiased bicubic resize of the input."""
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.random((3, 40, 30), dtype=np.float32))
    expected = torch.nn.functional.interpolate(image[None], size=(4, 3), mode='bicubic',
                                               antialias=True)[0].clamp(0, 1)
    calls = []
    handle = reference_model.register_forward_pre_hook(lambda *args: calls.append(1))
    try:
        out = upscale(image, size=(4, 3), model=reference_model)
    finally:
        handle.remove()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert calls == []
    # 40x30 noise to 4x3: an antialiased result is near the mean, point samples are not.
    assert out.std() < 0.2 * image.std()


def test_an_axis_that_grows_is_upsampled_and_one_that_shrinks_resized(reference_model):
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.random((3, 10, 12), dtype=np.float32))
    tall = upscale(image, size=(20, 12), model=reference_model)
    out = upscale(image, size=(20, 5), model=reference_model)
    expected = torch.nn.functional.interpolate(tall[None], size=(20, 5), mode='bicubic',
                                               antialias=True)[0].clamp(0, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_library_calls_refuse_in_one_line(reference_model, tmp_path):
    from liif_core import create_model
    from liif_core.data import PairedImageFolders, SRImplicitPaired
    from liif_core.evaluate import evaluate
    image = Image.new('RGB', (8, 6))
    with pytest.raises(ValueError, match=r"^the model holds float16 weights; upscale takes a "
                                         r"float32 model \(for half precision pass "
                                         r"dtype='float16'"):
        upscale(image, scale=2, model=load_model(REFERENCE_CKPT).half())
    with pytest.raises(CheckpointError, match=f'^{tmp_path}/w.pt: no such checkpoint file$'):
        create_model('edsr_baseline_liif', pretrained=str(tmp_path / 'w.pt'))
    write_images(tmp_path / 'lr', [(4, 4)])
    write_images(tmp_path / 'hr', [(8, 8)])
    swapped = SRImplicitPaired(PairedImageFolders(str(tmp_path / 'hr'), str(tmp_path / 'lr')))
    with pytest.raises(ValueError, match=r'^sr-implicit-paired: item 0: the HR image \(4x4\) is '
                                         r'smaller than its LR image \(8x8\); are the LR and HR '
                                         r'folders swapped\?$'):
        evaluate(reference_model, swapped, progress=False)
    paired = SRImplicitPaired(PairedImageFolders(str(tmp_path / 'lr'), str(tmp_path / 'hr')))
    with pytest.raises(ValueError, match=r"^eval_bsize must be a whole number >= 1 \(or "
                                         r"absent\), got '30000'$"):
        evaluate(reference_model, paired, eval_bsize='30000', progress=False)
    os.mkfifo(tmp_path / 'in.png')
    with pytest.raises(ValueError, match='in.png: not a regular file'):
        upscale_file(tmp_path / 'in.png', tmp_path / 'out.png', scale=2, model=reference_model)
    assert not (tmp_path / 'out.png').exists()
