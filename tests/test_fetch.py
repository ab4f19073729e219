"""Downloads against a loopback HTTP server: good files, wrong checksums, interrupted transfers
resumed with a Range request, a server that is down, the Debian / pip photo sets and the
official checkpoints."""
import hashlib
import io
import json
import os
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liif_core.cli import main
from liif_core.data import photos
from liif_core.data.download import FetchError, download
from liif_core.data import fetch as fetch_module
from liif_core.data.fetch import checkpoint_names, extract, fetch, load_manifest, manifest_names
from liif_core.pretrained import resolve_weights

REFERENCE_CKPT = Path(__file__).parent / 'reference' / 'edsr_liif_reference.pth'

torch.set_num_threads(2)


class Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours Range, except for the paths in ``server.from_zero``
    (206, but the whole file from byte 0); cuts each path in ``server.cut_once`` short once."""

    def do_GET(self):
        server = self.server
        server.log.append((self.path, self.headers.get('Range')))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get('Range'):
            if self.path not in server.from_zero:
                start = int(self.headers['Range'].split('=')[1].split('-')[0])
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.path in server.cut_once:
            server.cut_once.discard(self.path)
            body = body[:len(body) // 2]  # then the connection closes, short of Content-Length
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    httpd.files, httpd.cut_once, httpd.from_zero, httpd.log = {}, set(), set(), []
    httpd.url = f'http://127.0.0.1:{httpd.server_address[1]}'
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------
# The downloader

def test_good_file_arrives_verified(server, tmp_path):
    data = os.urandom(300_000)
    server.files['/a.bin'] = data
    dest = str(tmp_path / 'a.bin')
    download(f'{server.url}/a.bin', dest, size=len(data), md5=hashlib.md5(data).hexdigest(),
             sha256=sha256(data), progress=False)
    assert open(dest, 'rb').read() == data and not os.path.exists(dest + '.part')


def test_wrong_checksum_leaves_nothing_behind(server, tmp_path):
    server.files['/a.bin'] = b'x' * 1000
    dest = str(tmp_path / 'a.bin')
    with pytest.raises(FetchError, match='checksum mismatch.*sha256'):
        download(f'{server.url}/a.bin', dest, sha256='0' * 64, progress=False)
    with pytest.raises(FetchError, match='size 1000 != expected 999'):
        download(f'{server.url}/a.bin', dest, size=999, progress=False)
    assert os.listdir(tmp_path) == []


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    data = os.urandom(200_000)
    server.files['/big.zip'] = data
    server.cut_once.add('/big.zip')
    dest = str(tmp_path / 'big.zip')
    with pytest.raises(FetchError, match='interrupted.*run the same command again'):
        download(f'{server.url}/big.zip', dest, sha256=sha256(data), progress=False)
    assert not os.path.exists(dest) and os.path.getsize(dest + '.part') == 100_000
    download(f'{server.url}/big.zip', dest, sha256=sha256(data), progress=False)
    assert open(dest, 'rb').read() == data
    assert server.log == [('/big.zip', None), ('/big.zip', 'bytes=100000-')]


def test_a_resume_answered_from_byte_zero_starts_again(server, tmp_path):
    """206 with a Content-Range from byte 0, not from the .part's end: appending would make
    half a file followed by the whole file; the download starts again instead."""
    data = os.urandom(4000)
    server.files['/f.bin'] = data
    server.cut_once.add('/f.bin')
    server.from_zero.add('/f.bin')
    dest = str(tmp_path / 'f.bin')
    with pytest.raises(FetchError, match='run the same command again to resume'):
        download(f'{server.url}/f.bin', dest, progress=False)
    assert download(f'{server.url}/f.bin', dest, progress=False) == dest
    assert Path(dest).read_bytes() == data
    assert server.log[1:] == [('/f.bin', 'bytes=2000-'), ('/f.bin', None)]


def test_server_down_and_missing_file(server, tmp_path):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        closed_port = s.getsockname()[1]  # nothing listens here once the socket is closed
    with pytest.raises(FetchError, match='cannot reach'):
        download(f'http://127.0.0.1:{closed_port}/a.zip', str(tmp_path / 'a.zip'),
                 progress=False)
    with pytest.raises(FetchError, match='HTTP 404'):
        download(f'{server.url}/missing.zip', str(tmp_path / 'b.zip'), progress=False)


def test_extract_refuses_paths_outside(tmp_path):
    (tmp_path / 'evil.zip').write_bytes(zip_bytes({'../evil.txt': b'x'}))
    with pytest.raises(FetchError, match='outside'):
        extract(str(tmp_path / 'evil.zip'), str(tmp_path / 'out'))
    assert not (tmp_path / 'evil.txt').exists()


# ----------------------------------------------------------------------------------------------
# Archive manifests (DIV2K, benchmark)

def archive_manifest(tmp_path, server, entries):
    path = tmp_path / 'manifest.json'
    path.write_text(json.dumps({'name': 'tiny', 'title': 'tiny', 'kind': 'archives',
                                'target': 'tiny', 'files': entries}))
    return str(path)


def test_fetch_archives_from_manifest(server, tmp_path):
    archive = zip_bytes({'Tiny_HR/0001.png': b'png1', 'Tiny_HR/0002.png': b'png2'})
    server.files['/Tiny_HR.zip'] = archive
    manifest = archive_manifest(tmp_path, server, [{
        'filename': 'Tiny_HR.zip', 'url': f'{server.url}/Tiny_HR.zip', 'size': len(archive),
        'md5': hashlib.md5(archive).hexdigest(), 'sha256': sha256(archive),
        'extract': 'zip', 'provides': 'Tiny_HR'}])
    root = str(tmp_path / 'data')
    assert main(['data', 'fetch', manifest, '--root', root, '--no-progress']) == 0
    assert sorted(os.listdir(os.path.join(root, 'tiny', 'Tiny_HR'))) == ['0001.png', '0002.png']
    assert not os.path.exists(os.path.join(root, 'downloads', 'Tiny_HR.zip'))  # removed
    fetch(manifest, root, progress=False)  # already there: no second request
    assert len(server.log) == 1


def test_unpublished_checksum_is_recorded_then_enforced(server, tmp_path):
    archive = zip_bytes({'Set/HR/a.png': b'a'})
    server.files['/set.zip'] = archive
    manifest = archive_manifest(tmp_path, server, [{
        'filename': 'set.zip', 'url': f'{server.url}/set.zip', 'size': None, 'md5': None,
        'sha256': None, 'extract': 'zip', 'provides': 'Set'}])
    root = str(tmp_path / 'data')
    with pytest.warns(UserWarning, match='no published sha256'):
        fetch(manifest, root, progress=False)
    lock = json.loads((tmp_path / 'data' / 'fetch-lock.json').read_text())
    assert lock == {'set.zip': sha256(archive)}

    server.files['/set.zip'] = zip_bytes({'Set/HR/a.png': b'changed upstream'})
    os.rename(os.path.join(root, 'tiny', 'Set'), os.path.join(root, 'tiny', 'Old'))
    with pytest.raises(FetchError, match='checksum mismatch'):
        fetch(manifest, root, progress=False)


def test_packaged_archive_manifests_are_complete():
    assert {'div2k', 'div2k-x2', 'benchmark', 'standin', 'samples'} <= set(manifest_names())
    div2k = load_manifest('div2k')
    names = {f['filename'] for f in div2k['files']}
    assert names == {'DIV2K_train_HR.zip', 'DIV2K_valid_HR.zip', 'DIV2K_valid_LR_bicubic_X2.zip',
                     'DIV2K_valid_LR_bicubic_X3.zip', 'DIV2K_valid_LR_bicubic_X4.zip'}
    for manifest in (div2k, load_manifest('div2k-x2'), load_manifest('benchmark')):
        for entry in manifest['files']:
            assert entry['url'].startswith('http') and len(entry['md5']) == 32
    with pytest.raises(ValueError, match='unknown dataset'):
        load_manifest('div3k')


# ----------------------------------------------------------------------------------------------
# Photo sets

def ar_archive(members: list[tuple[str, bytes]]) -> bytes:
    """A minimal ``ar`` archive (the container format of a .deb)."""
    out = b'!<arch>\n'
    for name, data in members:
        header = f'{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n'.encode()
        out += header + data + (b'\n' if len(data) % 2 else b'')
    return out


def make_deb(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:xz') as tar:
        for path, data in files.items():
            info = tarfile.TarInfo('./' + path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return ar_archive([('debian-binary', b'2.0\n'), ('control.tar.xz', b''),
                       ('data.tar.xz', buffer.getvalue())])


def encoded(rgb: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt)
    return buffer.getvalue()


def expected_hr(data: bytes, max_side: int, multiple: int) -> np.ndarray:
    """Decode, Lanczos to the long side max_side, crop top-left to a multiple (independently)."""
    img = Image.open(io.BytesIO(data)).convert('RGB')
    w, h = img.size
    if max(w, h) > max_side:
        img = img.resize((round(w * max_side / max(w, h)), round(h * max_side / max(w, h))),
                         Image.LANCZOS)
    rgb = np.asarray(img)
    return rgb[:rgb.shape[0] // multiple * multiple, :rgb.shape[1] // multiple * multiple]


def test_debian_photos_from_mirror(server, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    photo_train = encoded(rng.integers(0, 256, (100, 150, 3), dtype=np.uint8), 'JPEG')
    photo_valid = encoded(rng.integers(0, 256, (50, 40, 3), dtype=np.uint8), 'PNG')
    deb = make_deb({'usr/share/backgrounds/a.jpg': photo_train,
                    'usr/share/wallpapers/B/b.png': photo_valid})
    server.files['/pool/walls_1_all.deb'] = deb
    manifest = {
        'name': 'mini', 'kind': 'debian', 'target': 'mini',
        'convert': {'max_side': 64, 'multiple': 12, 'lr_scales': [2, 3]},
        'packages': [{'package': 'walls', 'version': '1', 'size': len(deb), 'sha256': sha256(deb),
                      'url': f'{server.url}/pool/walls_1_all.deb'}],
        'images': [
            {'package': 'walls', 'member': 'usr/share/backgrounds/a.jpg', 'split': 'train',
             'sha256': sha256(photo_train), 'name': 'a.png'},
            {'package': 'walls', 'member': 'usr/share/wallpapers/B/b.png', 'split': 'valid',
             'sha256': sha256(photo_valid), 'name': 'B.png'}],
        'valid_parts': {'_about': 'a comment', 'valid_report': ['B.png']}}
    monkeypatch.setattr(photos, 'apt_download', lambda *args: None)  # as if apt were missing
    target = photos.fetch_debian_photos(manifest, str(tmp_path), progress=False)
    assert os.listdir(os.path.join(target, 'valid_report')) == ['B.png']
    assert os.path.samefile(os.path.join(target, 'valid_report', 'B.png'),
                            os.path.join(target, 'valid', 'B.png'))
    assert not os.path.exists(os.path.join(target, '_about'))

    train = np.asarray(Image.open(os.path.join(target, 'train', 'a.png')))
    np.testing.assert_array_equal(train, expected_hr(photo_train, 64, 12))
    assert train.shape == (36, 60, 3)  # 150x100 -> 64x43 -> cropped to 60x36
    valid = np.asarray(Image.open(os.path.join(target, 'valid', 'B.png')))
    np.testing.assert_array_equal(valid, expected_hr(photo_valid, 64, 12))  # 40x50 -> 36x48
    for s in (2, 3):
        lr = np.asarray(Image.open(os.path.join(target, 'valid_LR_bicubic', f'X{s}', f'Bx{s}.png')))
        bicubic = Image.fromarray(valid).resize((36 // s, 48 // s), Image.BICUBIC)
        np.testing.assert_array_equal(lr, np.asarray(bicubic))
    assert not os.path.exists(os.path.join(target, 'train_LR_bicubic'))
    assert os.listdir(tmp_path / 'downloads') == []  # the .deb is gone once used


def test_debian_photo_with_wrong_pin_fails(server, tmp_path, monkeypatch):
    deb = make_deb({'usr/a.png': encoded(np.zeros((24, 24, 3), np.uint8), 'PNG')})
    server.files['/w.deb'] = deb
    manifest = {
        'name': 'mini', 'kind': 'debian', 'target': 'mini',
        'convert': {'max_side': 64, 'multiple': 12, 'lr_scales': [2]},
        'packages': [{'package': 'w', 'version': '1', 'size': len(deb), 'sha256': sha256(deb),
                      'url': f'{server.url}/w.deb'}],
        'images': [{'package': 'w', 'member': 'usr/a.png', 'split': 'train', 'sha256': '0' * 64,
                    'name': 'a.png'}]}
    monkeypatch.setattr(photos, 'apt_download', lambda *args: None)
    with pytest.raises(FetchError, match='usr/a.png: sha256'):
        photos.fetch_debian_photos(manifest, str(tmp_path), progress=False)


def test_pip_photos(tmp_path, monkeypatch):
    package = tmp_path / 'site' / 'photopkg'
    os.makedirs(package / 'data')
    (package / '__init__.py').write_text('')
    rgb = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    data = encoded(rgb, 'PNG')
    (package / 'data' / 'cat.png').write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / 'site'))
    manifest = {'name': 'pics', 'kind': 'pip', 'target': 'pics',
                'convert': {'max_side': 2040, 'multiple': 12, 'lr_scales': [2, 4]},
                'images': [{'module': 'photopkg', 'resource': 'data/cat.png',
                            'sha256': sha256(data), 'name': 'cat.png'}]}
    target = photos.fetch_pip_photos(manifest, str(tmp_path / 'out'), progress=False)
    hr = np.asarray(Image.open(os.path.join(target, 'HR', 'cat.png')))
    np.testing.assert_array_equal(hr, rgb[:24, :36])
    lr = np.asarray(Image.open(os.path.join(target, 'LR_bicubic', 'X4', 'catx4.png')))
    assert lr.shape == (6, 9, 3)

    manifest['images'][0]['module'] = 'no_such_photo_package'
    with pytest.raises(FetchError, match='pip install no_such_photo_package'):
        photos.fetch_pip_photos(manifest, str(tmp_path / 'out2'), progress=False)


def test_packaged_photo_pins():
    standin = load_manifest('standin')
    splits = [im['split'] for im in standin['images']]
    assert splits.count('train') == 27 and splits.count('valid') == 11
    parts = standin['valid_parts']
    valid = sorted(im['name'] for im in standin['images'] if im['split'] == 'valid')
    assert sorted(parts['valid_tune'] + parts['valid_report']) == valid  # a partition
    assert len(parts['valid_report']) == 6 and len(parts['valid_tune']) == 5
    assert not any('umang' in im['member'] for im in standin['images'])
    assert all(len(p['sha256']) == 64 and p['size'] > 0 for p in standin['packages'])
    samples = load_manifest('samples')
    for im in samples['images']:  # the pins match the installed packages
        module = pytest.importorskip(im['module'])
        path = os.path.join(os.path.dirname(module.__file__), im['resource'])
        assert sha256(open(path, 'rb').read()) == im['sha256'], path


def test_cli_lists_and_reports_errors(capsys):
    assert main(['data', 'list']) == 0
    assert 'standin' in capsys.readouterr().out
    assert main(['data', 'fetch', 'div3k', '--no-progress']) == 1
    assert 'liif data: error: unknown dataset' in capsys.readouterr().err


def test_samples_set_builds_offline(tmp_path):
    for module in ('skimage', 'matplotlib'):
        pytest.importorskip(module)
    target = fetch('samples', str(tmp_path), progress=False)
    names = sorted(os.listdir(os.path.join(target, 'HR')))
    assert names == ['astronaut.png', 'chelsea.png', 'coffee.png', 'grace_hopper.png',
                     'rocket.png']
    for name in names:
        h, w = Image.open(os.path.join(target, 'HR', name)).size[::-1]
        assert h % 12 == 0 and w % 12 == 0 and min(h, w) >= 300
        lr = Image.open(os.path.join(target, 'LR_bicubic', 'X3', name[:-4] + 'x3.png'))
        assert lr.size == (w // 3, h // 3)


# ----------------------------------------------------------------------------------------------
# The official checkpoints

def test_packaged_checkpoint_manifests():
    assert checkpoint_names() == ['edsr-baseline-liif', 'rdn-liif']
    for name in checkpoint_names():
        (entry,) = load_manifest(name)['files']
        assert entry['filename'] == f'{name}.pth' and entry['url'].startswith('https://')
        assert entry['sha256'] is None  # not published: recorded on first download


def test_official_checkpoint_is_fetched_then_found_by_name(server, tmp_path, monkeypatch,
                                                           capsys):
    data = REFERENCE_CKPT.read_bytes()
    server.files['/edsr-baseline-liif.pth'] = data
    packaged = fetch_module.load_manifest

    def served(name):  # the packaged manifest, its file served from here
        manifest = packaged(name)
        if name == 'edsr-baseline-liif':
            manifest['files'][0]['url'] = f'{server.url}/edsr-baseline-liif.pth'
        return manifest

    monkeypatch.setattr(fetch_module, 'load_manifest', served)
    monkeypatch.chdir(tmp_path)  # the default data root, ./data, is here
    path = tmp_path / 'data' / 'weights' / 'edsr-baseline-liif.pth'
    with pytest.raises(FetchError, match=r'is not downloaded; run `liif data fetch '
                                         r'edsr_baseline_liif.div2k`$'):
        resolve_weights('edsr_baseline_liif.div2k')
    with pytest.warns(UserWarning, match='no published sha256'):
        assert main(['data', 'fetch', 'edsr_baseline_liif.div2k', '--no-progress']) == 0
    assert path.read_bytes() == data
    assert json.loads((tmp_path / 'data' / 'fetch-lock.json').read_text()) == {
        'edsr-baseline-liif.pth': sha256(data)}
    capsys.readouterr()
    assert main(['data', 'fetch', '--no-progress', 'edsr-baseline-liif']) == 0  # the old name
    assert capsys.readouterr().err == ("liif data: note: 'edsr-baseline-liif' is now named "
                                       "'edsr_baseline_liif.div2k'\n")
    assert len(server.log) == 1  # already there: no second request
    for name in ('edsr_baseline_liif.div2k', 'edsr-baseline-liif', 'edsr-baseline-liif.pth'):
        assert resolve_weights(name) == Path('data') / 'weights' / 'edsr-baseline-liif.pth'
    Image.new('RGB', (6, 5)).save(tmp_path / 'in.png')
    assert main(['upscale', 'in.png', 'out.png', '--scale', '2',
                 '--weights', 'edsr_baseline_liif.div2k']) == 0
    assert Image.open(tmp_path / 'out.png').size == (12, 10)
    with open(path, 'ab') as f:
        f.write(b'\0')
    with pytest.raises(FetchError, match='sha256 differs from the one recorded at download'):
        resolve_weights('edsr_baseline_liif.div2k')


# ----------------------------------------------------------------------------------------------
# Downloads that prove themselves, and a data root no one else can steer

def checkpoint_manifest(tmp_path, url, filename='w.pth'):
    path = tmp_path / 'ckpt.json'
    path.write_text(json.dumps({'name': 'w', 'title': 'w', 'kind': 'checkpoint',
                                'target': 'weights', 'files': [
                                    {'filename': filename, 'url': url, 'size': None,
                                     'md5': None, 'sha256': None}]}))
    return str(path)


def test_a_first_download_that_is_no_checkpoint_is_never_pinned(server, tmp_path, capsys):
    """A 200 with an HTML error page: refused in one line, deleted, nothing pinned, and the
    real file is taken once the server serves it."""
    server.files['/w.pth'] = b'<!DOCTYPE html><html>Rate limited</html>'
    manifest = checkpoint_manifest(tmp_path, f'{server.url}/w.pth')
    root = tmp_path / 'data'
    assert main(['data', 'fetch', manifest, '--root', str(root), '--no-progress']) == 1
    assert capsys.readouterr().err == (
        f'liif data: error: {server.url}/w.pth: the download is not a checkpoint (it is an '
        'HTML page, likely an error or sign-in page); it was deleted and nothing was pinned: '
        'check the URL, or run again later\n')
    assert not (root / 'fetch-lock.json').exists() and list((root / 'weights').iterdir()) == []
    server.files['/w.pth'] = REFERENCE_CKPT.read_bytes()
    with pytest.warns(UserWarning, match='no published sha256'):
        fetch(manifest, str(root), progress=False)
    assert json.loads((root / 'fetch-lock.json').read_text()) == {
        'w.pth': sha256(REFERENCE_CKPT.read_bytes())}


def test_a_pinned_mismatch_says_how_to_recover(server, tmp_path):
    archive = zip_bytes({'Set/a.png': b'a'})
    server.files['/set.zip'] = archive
    root = tmp_path / 'data'
    (root / 'downloads').mkdir(parents=True)
    (root / 'fetch-lock.json').write_text(json.dumps({'set.zip': sha256(b'older')}))
    manifest = archive_manifest(tmp_path, server, [{
        'filename': 'set.zip', 'url': f'{server.url}/set.zip', 'size': None, 'md5': None,
        'sha256': None, 'provides': 'Set'}])
    lock = root / 'fetch-lock.json'
    with pytest.raises(FetchError, match=f"checksum mismatch .*; if the file changed upstream on "
                                         f"purpose, remove 'set.zip' from {lock} to pin the new "
                                         'one$'):
        fetch(manifest, str(root), progress=False)


def test_the_lock_file_is_never_written_through_a_planted_link(server, tmp_path):
    archive = zip_bytes({'Set/a.png': b'a'})
    server.files['/set.zip'] = archive
    root = tmp_path / 'data'
    root.mkdir()
    outside = tmp_path / 'outside.txt'
    outside.write_text('precious')
    (root / 'fetch-lock.json.tmp').symlink_to(outside)
    manifest = archive_manifest(tmp_path, server, [{
        'filename': 'set.zip', 'url': f'{server.url}/set.zip', 'size': None, 'md5': None,
        'sha256': None, 'provides': 'Set'}])
    with pytest.warns(UserWarning, match='no published sha256'):
        fetch(manifest, str(root), progress=False)
    assert outside.read_text() == 'precious'
    assert json.loads((root / 'fetch-lock.json').read_text()) == {'set.zip': sha256(archive)}


@pytest.mark.parametrize('manifest, error', [
    ({'kind': 'checkpoint', 'target': 'weights',
      'files': [{'filename': '../../../escaped.pth', 'url': 'http://127.0.0.1:9/x'}]},
     "manifest '{m}': the file name '../../../escaped.pth' leaves the data root; refused"),
    ({'kind': 'archives', 'target': '/etc', 'files': []},
     "manifest '{m}': the file name '/etc' leaves the data root; refused"),
    ({'kind': 'checkpoint', 'target': 'weights'},
     "manifest '{m}': 'files' must be a list of entries"),
    ({'kind': 'archives', 'target': 'x', 'files': [{'filename': 'a.zip', 'url': 'u'}]},
     "manifest '{m}': an entry of 'files' lacks provides: {{'filename': 'a.zip', 'url': 'u'}}"),
])
def test_hostile_manifests_are_refused_before_any_download(tmp_path, capsys, manifest, error):
    path = tmp_path / 'm.json'
    path.write_text(json.dumps(manifest))
    assert main(['data', 'fetch', str(path), '--root', str(tmp_path / 'data')]) == 1
    assert capsys.readouterr().err == f'liif data: error: {error.format(m=path)}\n'
    assert sorted(os.listdir(tmp_path)) == ['m.json']


@pytest.mark.parametrize('content', ['[]', '{"a.zip": 3}', '{not json'])
def test_a_damaged_lock_file_is_one_line(server, tmp_path, capsys, content):
    root = tmp_path / 'data'
    root.mkdir()
    (root / 'fetch-lock.json').write_text(content)
    manifest = archive_manifest(tmp_path, server, [{
        'filename': 'set.zip', 'url': f'{server.url}/set.zip', 'provides': 'Set'}])
    assert main(['data', 'fetch', manifest, '--root', str(root), '--no-progress']) == 1
    assert capsys.readouterr().err == (
        f'liif data: error: {root}/fetch-lock.json: not a lock file (a JSON object of file '
        'name: sha256); delete it, and every file it pinned is pinned afresh by the next '
        'fetch\n')


def test_an_interrupted_unpack_is_redone_and_never_read(server, tmp_path, monkeypatch):
    from liif_core.data import ImageFolder
    rng = np.random.default_rng(0)
    pngs = {}
    for i in range(3):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(buffer, 'PNG')
        pngs[f'Set/{i}.png'] = buffer.getvalue()
    archive = zip_bytes(pngs)
    server.files['/set.zip'] = archive
    manifest = archive_manifest(tmp_path, server, [{
        'filename': 'set.zip', 'url': f'{server.url}/set.zip', 'sha256': sha256(archive),
        'provides': 'Set'}])
    root = tmp_path / 'data'
    written = []

    def dies_after_one(self, member, path=None, pwd=None):
        if written:
            raise OSError(28, 'No space left on device')
        written.append(member)
        return real_extract(self, member, path, pwd)

    real_extract = zipfile.ZipFile._extract_member
    monkeypatch.setattr(zipfile.ZipFile, '_extract_member', dies_after_one)
    with pytest.raises(OSError, match='No space left'):
        fetch(manifest, str(root), progress=False)
    monkeypatch.undo()
    folder = root / 'tiny' / 'Set'
    assert len(os.listdir(folder)) == 1
    with pytest.raises(ValueError, match=f'is incomplete: unpacking {folder} was interrupted; '
                                         'run `liif data fetch` again to finish it$'):
        ImageFolder(str(folder))
    fetch(manifest, str(root), progress=False)  # the archive kept: no second download
    assert sorted(os.listdir(folder)) == ['0.png', '1.png', '2.png'] and len(server.log) == 1
    assert len(ImageFolder(str(folder))) == 3
