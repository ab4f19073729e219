"""DistributedDataParallel: two CPU processes (gloo on 127.0.0.1), each with half of every batch,
end with the weights one process reaches with the whole batch; a stopped two-process run
resumes to the uninterrupted one; the processes share one copy of an ``in_memory`` image set."""
import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import Dataset

from liif_core.train import train

TINY_MODEL = {'name': 'liif', 'args': {
    'encoder_spec': {'name': 'edsr-baseline',
                     'args': {'n_resblocks': 1, 'n_feats': 8, 'no_upsampling': True}},
    'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [16]}}}}

CONFIG = {
    'train_dataset': {'batch_size': 4},  # 2 per process under DDP
    'data_norm': {'inp': {'sub': [0.5], 'div': [0.5]}, 'gt': {'sub': [0.5], 'div': [0.5]}},
    'model': TINY_MODEL,
    'optimizer': {'name': 'adam', 'args': {'lr': 1e-3}},
    'epoch_max': 2,  # 8 items / 4 per step: 4 optimiser steps in all
    'multi_step_lr': {'milestones': [1], 'gamma': 0.5},
}


class FixedItems(Dataset):
    """Eight fixed training items: which process draws an item changes nothing but its place."""

    def __init__(self, n: int = 8):
        g = torch.Generator().manual_seed(3)
        self.items = [{'inp': torch.rand(3, 8, 8, generator=g),
                       'coord': torch.rand(24, 2, generator=g) * 2 - 1,
                       'cell': torch.full((24, 2), 2 / 16),
                       'gt': torch.rand(24, 3, generator=g)} for _ in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        return self.items[idx]


def _torchrun_env(rank: int, world_size: int, port: int) -> None:
    """What torchrun sets for each process."""
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)


def _train_one_rank(rank: int, world_size: int, port: int, save_dir: str) -> None:
    _torchrun_env(rank, world_size, port)
    train(CONFIG, save_dir, device='cpu', num_workers=0, train_data=FixedItems(),
          progress=False, log=lambda line: None)


def _start(fn, *args) -> None:
    """Two processes running ``fn(rank, 2, port, *args)``. fork starts in a fraction of spawn's
    time (no re-import of torch); each process then uses one thread and builds its own gloo
    group. Elsewhere fork is unsafe: spawn."""
    start_method = 'fork' if sys.platform == 'linux' else 'spawn'
    mp.start_processes(fn, args=(2, _free_port(), *args), nprocs=2, start_method=start_method)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_processes_match_one_with_the_combined_batch(tmp_path):
    torch.set_num_threads(1)
    single, ddp = tmp_path / 'single', tmp_path / 'ddp'
    train(CONFIG, single, device='cpu', num_workers=0, train_data=FixedItems(),
          progress=False, log=lambda line: None)
    _start(_train_one_rank, str(ddp))

    a = torch.load(single / 'epoch-last.pth', weights_only=True)
    b = torch.load(ddp / 'epoch-last.pth', weights_only=True)
    assert a['epoch'] == b['epoch'] == 2
    assert len(b['rng']) == 2  # each process's random state, for resuming the same DDP run
    for k, v in a['model']['sd'].items():
        torch.testing.assert_close(b['model']['sd'][k], v, rtol=1e-6, atol=1e-7, msg=k)
    # The logged loss is the mean over both processes: the single process's batch mean.
    loss_a = [json.loads(line)['train_loss'] for line in (single / 'log.jsonl').open()]
    loss_b = [json.loads(line)['train_loss'] for line in (ddp / 'log.jsonl').open()]
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    assert not any(k.startswith('module.') for k in b['model']['sd'])


def _train_random_crops(rank: int, world_size: int, port: int, save_dir: str, epochs: int,
                        resume: bool) -> None:
    """Random crops drawn in a DataLoader worker, and validation on rank 0: everything a resume
    must restore."""
    from test_train import RandomCrops, make_config, smooth_images
    _torchrun_env(rank, world_size, port)
    config = make_config(epoch_max=epochs, model=TINY_MODEL)
    train(config, save_dir, resume=resume, device='cpu', num_workers=1,
          train_data=RandomCrops(smooth_images(4)), val_data=RandomCrops(smooth_images(2)),
          progress=False, log=lambda line: None)


def test_two_process_run_resumes_as_if_uninterrupted(tmp_path):
    straight, stopped = tmp_path / 'straight', tmp_path / 'stopped'
    _start(_train_random_crops, str(straight), 2, False)
    _start(_train_random_crops, str(stopped), 1, False)
    _start(_train_random_crops, str(stopped), 2, True)
    def log(save_dir):  # every field but the epoch's duration
        return [{k: v for k, v in json.loads(line).items() if k != 'time'}
                for line in (save_dir / 'log.jsonl').read_text().splitlines()]

    assert log(straight) == log(stopped)
    a = torch.load(straight / 'epoch-last.pth', weights_only=True)
    b = torch.load(stopped / 'epoch-last.pth', weights_only=True)
    assert a['epoch'] == b['epoch'] == 2
    for k, v in a['model']['sd'].items():
        assert torch.equal(v, b['model']['sd'][k]), k


@pytest.mark.skipif(not os.path.isdir('/dev/shm'), reason='shared memory is /dev/shm (Linux)')
def test_torchrun_processes_share_one_copy_of_in_memory_images():
    """scripts/ddp_memory.py under torchrun, 2 processes, 4 images of 2048x1536 (36 MiB as 8-bit
    RGB): each process's own memory (USS) barely grows, and the shared pages are split between
    the two (PSS), where each used to hold its own float32 copy (144 MiB). The images are large
    enough that the libraries a process loads on its first decode (a few MiB, more on a cold
    machine) stay small beside them."""
    import subprocess
    script = Path(__file__).resolve().parent.parent / 'scripts' / 'ddp_memory.py'
    done = subprocess.run([sys.executable, str(script), '--images', '4', '--size', '2048x1536',
                           '--nproc', '2'], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    image_mib = report['decoded_uint8_mib']
    for process in report['per_process_mib']:
        assert process['uss'] < 0.25 * image_mib, report
    assert sum(p['pss'] for p in report['per_process_mib']) < 1.6 * image_mib, report
