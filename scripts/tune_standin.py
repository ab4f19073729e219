"""Choose the long run's learning rate and crop sampling on the tuning photos only.

Each arm continues the shipped weights for the same number of steps, from the same seed, with
the long run's config (``cpu/train_edsr-baseline-liif-standin-long``) changed in one setting,
and is scored on the 80 fixed validation crops of ``valid_tune`` after every epoch. The arms
run in processes of one thread each (``--jobs`` at once), in bfloat16 as the long run;
two arms repeat the first and the texture arm with another seed, to show how far apart two
seeds land; every arm is scored on the same crops (``val_seed``).
The result, with every arm's log and what the machine was, goes to
``book/results/tuning/standin-ab.json``; the choice is then written into the long config by
hand, with this file as its evidence.

    python scripts/tune_standin.py [--epochs 8] [--jobs 2] [--arms NAME ...]

``--arms`` trains only the named arms and keeps the others already in the output file.
"""
from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from torch.utils.data import DataLoader

from liif_core import make_model
from liif_core.device import cpu_name
from liif_core.configs import load_config
from liif_core.data import make_data
from liif_core.init import apply_init
from liif_core.render import BICUBIC
from liif_core.train import train
from liif_core.train_config import TrainConfig
from liif_core.train_state import read_records
from liif_core.validation import validate

CONFIG = 'cpu/train_edsr-baseline-liif-standin-long'
ARMS = {  # name -> (learning rate, texture_tries, seed); the seed-1 arms measure seed noise
    'lr 1e-4': (1e-4, 1, 0),
    'lr 2e-4': (2e-4, 1, 0),
    'lr 1e-4, texture x4': (1e-4, 4, 0),
    'lr 1e-4, seed 1': (1e-4, 1, 1),
    'lr 1e-4, texture x4, seed 1': (1e-4, 4, 1),
}


def arm_config(lr: float, texture_tries: int, seed: int, epochs: int) -> dict:
    config = copy.deepcopy(load_config(CONFIG))
    config['optimizer']['args']['lr'] = lr
    config['train_dataset']['wrapper']['args']['texture_tries'] = texture_tries
    # val_seed: every arm, the seed arm too, is scored on the same 80 crops.
    config.update(epoch_max=epochs, epoch_val=1, multi_step_lr=None, seed=seed, val_seed=0)
    return config


def run_arm(lr: float, tries: int, seed: int, epochs: int) -> dict:
    """Train one arm in a temporary folder; its settings, log and wall time."""
    torch.set_num_threads(1)
    save_dir = Path(tempfile.mkdtemp(prefix='tune-'))
    t0 = time.time()
    try:
        train(arm_config(lr, tries, seed, epochs), save_dir, data_root='data', device='cpu',
              num_workers=0, amp='bf16', progress=False, log=print)
        log = read_records(save_dir / 'log.jsonl')
    finally:
        shutil.rmtree(save_dir)
    return {'lr': lr, 'texture_tries': tries, 'seed': seed, 'log': log,
            'wall_s': time.time() - t0}


def start_psnr(config: dict) -> dict[str, float]:
    """The shipped weights' PSNR on the arms' validation crops, before any step."""
    cfg = TrainConfig.from_dict(config)
    loader = DataLoader(make_data(cfg.val_dataset, data_root='data'),
                        batch_size=cfg.val_dataset['batch_size'])
    model = apply_init(make_model(cfg.model), cfg.init)
    return {'val_psnr': validate(model, loader, cfg, cfg.val_seed, progress=False),
            'val_psnr_bicubic': validate(BICUBIC, loader, cfg, cfg.val_seed, progress=False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--epochs', type=int, default=8)
    parser.add_argument('--jobs', type=int, default=2, help='arms trained at once')
    parser.add_argument('--out', default='book/results/tuning/standin-ab.json')
    parser.add_argument('--arms', nargs='+', choices=ARMS, default=list(ARMS),
                        help='arms to train (default: all)')
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    result = {'config': CONFIG, 'epochs': args.epochs, 'cpu': cpu_name(), 'threads': 1,
              'torch': torch.__version__, 'precision': 'bfloat16', 'arms': {}}
    if set(args.arms) != set(ARMS) and out.is_file():
        kept = json.loads(out.read_text())
        if {k: kept.get(k) for k in ('config', 'epochs', 'cpu', 'torch')} != \
                {k: result[k] for k in ('config', 'epochs', 'cpu', 'torch')}:
            raise SystemExit(f'{out} was made with other settings or on another machine; '
                             'train all arms again')
        result = kept
    else:
        result['start'] = start_psnr(arm_config(1e-4, 1, 0, args.epochs))
    out.parent.mkdir(parents=True, exist_ok=True)
    # Arms in parallel processes of one thread each: the numbers do not depend on --jobs.
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context('spawn')) as pool:
        futures = {pool.submit(run_arm, *ARMS[name], args.epochs): name for name in args.arms}
        for future in as_completed(futures):
            result['arms'][futures[future]] = future.result()
            out.write_text(json.dumps(result, indent=1) + '\n')  # each arm as soon as it ends
    result['arms'] = {name: result['arms'][name] for name in ARMS if name in result['arms']}
    out.write_text(json.dumps(result, indent=1) + '\n')
    print(f"start (shipped weights): val PSNR {result['start']['val_psnr']:.3f} dB")
    for name, arm in result['arms'].items():
        last = arm['log'][-1]
        print(f"{name:22s} val PSNR {last['val_psnr']:.3f} dB "
              f"(bicubic {last['val_psnr_bicubic']:.3f}), {arm['wall_s'] / 60:.1f} min")


if __name__ == '__main__':
    main()
