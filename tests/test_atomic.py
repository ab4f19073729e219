"""atomic_write: the destination appears whole or not at all, and the temporary files of
writers killed outright are cleaned up by the next write into the folder, never those of a
writer still running, of another machine or of another process-id namespace."""
import signal
import subprocess
import sys

import pytest

from liif_core.atomic import _host, atomic_write, clean_stale

# Starts an atomic write, says so, and waits to be killed in the middle of it.
WRITER = '''
import sys, time
from liif_core.atomic import atomic_write
with atomic_write(sys.argv[1]) as f:
    f.write(b'half of a file')
    f.flush()
    print('writing', flush=True)
    time.sleep(600)
'''


def test_a_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    (tmp_path / 'out.bin').write_bytes(b'old')
    with atomic_write(tmp_path / 'out.bin') as f:
        f.write(b'new')
    assert (tmp_path / 'out.bin').read_bytes() == b'new'
    assert [p.name for p in tmp_path.iterdir()] == ['out.bin']


def test_a_failed_write_keeps_the_old_file(tmp_path):
    (tmp_path / 'out.bin').write_bytes(b'old')
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / 'out.bin') as f:
            f.write(b'partial')
            raise RuntimeError('failed in the middle')
    assert [p.name for p in tmp_path.iterdir()] == ['out.bin']
    assert (tmp_path / 'out.bin').read_bytes() == b'old'


def test_the_next_write_cleans_up_after_a_killed_writer(tmp_path):
    killed = subprocess.Popen([sys.executable, '-c', WRITER, str(tmp_path / 'big.bin')],
                              stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline() == 'writing\n'
    killed.send_signal(signal.SIGKILL)
    killed.wait()  # reaped: its process id now names no process
    stale = list(tmp_path.iterdir())
    assert len(stale) == 1 and stale[0].name.startswith('.big.bin.') \
        and stale[0].name.endswith(f'.{killed.pid}@{_host()}.tmp')

    running = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])
    try:
        kept = [tmp_path / f'.big.bin.abcd1234.{running.pid}@{_host()}.tmp',  # writer alive
                tmp_path / f'.big.bin.abcd1234.{killed.pid}@other-machine.tmp',
                # this host name, another container's process ids: its writer may be running
                tmp_path / f'.big.bin.abcd1234.{killed.pid}@{_host().split("-ns")[0]}-ns1.tmp',
                tmp_path / '.notes.tmp']  # not one of ours
        for path in kept:
            path.write_bytes(b'keep')
        with atomic_write(tmp_path / 'small.bin') as f:
            f.write(b'done')
        assert sorted(tmp_path.iterdir()) == sorted(kept + [tmp_path / 'small.bin'])
    finally:
        running.kill()
        running.wait()
    # Its writer gone now, the first one goes too, on the next call.
    assert clean_stale(tmp_path) == [kept[0]]
    assert clean_stale(tmp_path / 'missing') == []
