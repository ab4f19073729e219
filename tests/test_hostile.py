"""Hostile and careless use beyond bad arguments: other users on the machine, planted files,
servers that lie, decompression bombs, two runs in one folder, a resume with another config,
killed processes. Each case ends in one line (or is refused before any work), loses no file,
and leaves nothing another user can read or plant. In process where it can be, in a subprocess
where it must (locks held by another process, memory limits, SIGKILL)."""
import os
import signal
import stat
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from liif_core.data import ImageFolder, folders

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
    monkeypatch.setattr(folders, 'SHARED_DIR', str(shared))
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '2')
    monkeypatch.setenv('MASTER_PORT', '29555')
    monkeypatch.setattr(folders.atexit, 'register', lambda *args: None)  # left to tmp_path
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
    monkeypatch.setattr(folders.atexit, 'register', lambda *args: exit_handlers.append(args))
    ImageFolder(str(tmp_path / 'HR'), cache='in_memory')
    private = shm / f'liif-{os.getuid()}'
    before = sorted(p.name for p in private.iterdir())
    (users,) = private.glob('*.users')
    holder = subprocess.Popen([sys.executable, '-c', HOLDER, str(users)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == 'holding\n'
        os.close(exit_handlers[0][1])  # this process is gone; the other still maps the set
        folders._clean_unused(str(private))  # a new job starts
        assert sorted(p.name for p in private.iterdir()) == before
    finally:
        holder.send_signal(signal.SIGKILL)  # no exit handler runs
        holder.wait()
    assert len(before) == 4
    folders._clean_unused(str(private))
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
