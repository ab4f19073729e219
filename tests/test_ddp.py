"""DistributedDataParallel: two CPU processes (gloo on 127.0.0.1), each with half of every batch,
end with the weights one process reaches with the whole batch."""
import json
import os
import socket
import sys

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


def _train_one_rank(rank: int, world_size: int, port: int, save_dir: str) -> None:
    # What torchrun would set for each process.
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    train(CONFIG, save_dir, device='cpu', num_workers=0, train_data=FixedItems(),
          progress=False, log=lambda line: None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_processes_match_one_with_the_combined_batch(tmp_path):
    torch.set_num_threads(1)
    single, ddp = tmp_path / 'single', tmp_path / 'ddp'
    train(CONFIG, single, device='cpu', num_workers=0, train_data=FixedItems(),
          progress=False, log=lambda line: None)
    # fork starts in a fraction of spawn's time (no re-import of torch); each process then
    # uses one thread and builds its own gloo group. Elsewhere fork is unsafe: spawn.
    start_method = 'fork' if sys.platform == 'linux' else 'spawn'
    mp.start_processes(_train_one_rank, args=(2, _free_port(), str(ddp)), nprocs=2,
                       start_method=start_method)

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
