"""The training loop: official checkpoint layout, schedule, logs, bit-exact resume, NaN stop,
atomic saves. A tiny model (EDSR-baseline with 1 block of 8 features, MLP [16]) on a few
synthetic images keeps every run to a second or two."""
import json
import math
import random

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import Dataset, DistributedSampler

from liif_core import load_model, make_cell, make_coord, resize_fn
from liif_core.train import TrainingDiverged, train

TINY_MODEL = {'name': 'liif', 'args': {
    'encoder_spec': {'name': 'edsr-baseline',
                     'args': {'n_resblocks': 1, 'n_feats': 8, 'no_upsampling': True}},
    'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [16]}}}}


def smooth_images(n: int, size: int = 32, seed: int = 0) -> list[torch.Tensor]:
    """Smooth colour gradients plus a few sinusoids, quantised to k/255 like decoded files."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.linspace(0, 1, size).view(size, 1)
    cols = torch.linspace(0, 1, size).view(1, size)
    images = []
    for _ in range(n):
        a, b, f = torch.rand(3, 3, generator=g)
        img = torch.stack([0.5 + 0.25 * torch.sin(6 * f[c] * rows + 4 * b[c] * cols + a[c] * 6)
                           + 0.2 * (rows - cols) * (c - 1) for c in range(3)])
        images.append((img.clamp(0, 1) * 255).round() / 255)  # (3, size, size)
    return images


class RandomCrops(Dataset):
    """Like ``sr-implicit-downsampled`` in training: scale and crop from Python's ``random``,
    query sampling from numpy's global RNG, so resume must restore both."""

    def __init__(self, images, inp_size=8, scale_max=3.0, sample_q=24, repeat=4):
        self.images, self.inp_size, self.scale_max = images, inp_size, scale_max
        self.sample_q, self.repeat = sample_q, repeat

    def __len__(self):
        return len(self.images) * self.repeat

    def __getitem__(self, idx):
        img = self.images[idx % len(self.images)]
        s = random.uniform(1, self.scale_max)
        w_hr = round(self.inp_size * s)
        x0 = random.randint(0, img.shape[-2] - w_hr)
        y0 = random.randint(0, img.shape[-1] - w_hr)
        hr = img[:, x0:x0 + w_hr, y0:y0 + w_hr]
        inp = resize_fn(hr, self.inp_size)
        coord = make_coord(hr.shape[-2:])
        gt = hr.reshape(3, -1).t()
        keep = np.random.choice(len(coord), self.sample_q, replace=False)
        coord, gt = coord[keep], gt[keep]
        return {'inp': inp, 'coord': coord, 'cell': make_cell(coord, hr.shape[-2:]), 'gt': gt}


class Poisoned(Dataset):
    """Fixed items; item ``bad`` has a NaN target once ``poisoned`` is set."""

    def __init__(self, n=8, bad=5):
        g = torch.Generator().manual_seed(1)
        self.items = [{'inp': torch.rand(3, 8, 8, generator=g),
                       'coord': torch.rand(24, 2, generator=g) * 2 - 1,
                       'cell': torch.full((24, 2), 2 / 16),
                       'gt': torch.rand(24, 3, generator=g)} for _ in range(n)]
        self.bad, self.poisoned = bad, False

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        item = dict(self.items[idx])
        if self.poisoned and idx == self.bad:
            item['gt'] = torch.full_like(item['gt'], float('nan'))
        return item


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: on a busy 2-core machine, thread hand-offs cost more than the arithmetic.
    Every comparison here is between runs in the same process, so the count does not matter."""
    torch.set_num_threads(1)


def make_config(epoch_max=2, lr=1e-3, **extra):
    config = {
        'train_dataset': {'batch_size': 4},
        'val_dataset': {'batch_size': 4},
        'data_norm': {'inp': {'sub': [0.5], 'div': [0.5]}, 'gt': {'sub': [0.5], 'div': [0.5]}},
        'model': TINY_MODEL,
        'optimizer': {'name': 'adam', 'args': {'lr': lr}},
        'epoch_max': epoch_max,
        'multi_step_lr': {'milestones': [1], 'gamma': 0.5},
        'epoch_val': 1,
        'epoch_save': 2,
    }
    config.update(extra)
    return config


def run(config, save_dir, resume=False, workers=0, images=None, **kwargs):
    images = smooth_images(3) if images is None else images
    kwargs.setdefault('train_data', RandomCrops(images))
    kwargs.setdefault('val_data', RandomCrops(images, repeat=2))
    return train(config, save_dir, resume=resume, device='cpu', num_workers=workers,
                 progress=False, log=lambda line: None, **kwargs)


def read_log(save_dir):
    return [json.loads(line) for line in (save_dir / 'log.jsonl').read_text().splitlines()]


@pytest.fixture(scope='module')
def straight(tmp_path_factory):
    """Two uninterrupted epochs."""
    torch.set_num_threads(1)
    save_dir = tmp_path_factory.mktemp('straight')
    run(make_config(epoch_max=2), save_dir)
    return save_dir


def test_official_checkpoint_layout(straight):
    assert {p.name for p in straight.iterdir()} >= {
        'epoch-last.pth', 'epoch-best.pth', 'epoch-2.pth', 'config.yaml', 'log.jsonl'}
    assert not (straight / 'epoch-1.pth').exists()  # epoch_save is 2
    ckpt = torch.load(straight / 'epoch-last.pth', weights_only=True)
    assert ckpt['epoch'] == 2
    assert ckpt['model']['name'] == 'liif' and ckpt['model']['args'] == TINY_MODEL['args']
    assert ckpt['optimizer']['name'] == 'adam' and ckpt['optimizer']['args'] == {'lr': 1e-3}
    assert ckpt['optimizer']['sd']['state']  # Adam moments are saved, as the official files
    assert not any(k.startswith('module.') for k in ckpt['model']['sd'])
    model = load_model(straight / 'epoch-last.pth')
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt['model']['sd'][k])
    assert yaml.safe_load((straight / 'config.yaml').read_text()) == make_config(epoch_max=2)


def test_log_and_schedule(straight):
    records = read_log(straight)
    assert [r['epoch'] for r in records] == [1, 2]
    # MultiStepLR(milestones [1], gamma 0.5), stepped once per epoch after training.
    assert [r['lr'] for r in records] == [1e-3, 5e-4]
    for r in records:
        assert math.isfinite(r['train_loss']) and r['time'] > 0
        assert 10 < r['val_psnr'] < 60 and 10 < r['val_psnr_bicubic'] < 60
    best = torch.load(straight / 'epoch-best.pth', weights_only=True)
    assert best['best_val_psnr'] == max(r['val_psnr'] for r in records)
    assert best['epoch'] == max(records, key=lambda r: r['val_psnr'])['epoch']


def test_validation_repeats_its_crops_and_leaves_the_training_rng_alone(tmp_path):
    from torch.utils.data import DataLoader
    from liif_core import make_model
    from liif_core.validation import validate
    loader = DataLoader(RandomCrops(smooth_images(3), repeat=2), batch_size=4,
                        generator=torch.Generator())
    model, config = make_model(TINY_MODEL), make_config()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    first = validate(model, loader, config, seed=0, progress=False)
    assert validate(model, loader, config, seed=0, progress=False) == first
    assert validate(model, loader, config, seed=1, progress=False) != first  # other crops
    assert random.getstate() == before[0]
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2])
    # So training with or without validation reaches the same weights.
    run(make_config(epoch_max=2), tmp_path / 'with')
    run(make_config(epoch_max=2, val_dataset=None), tmp_path / 'without', val_data=None)
    a = torch.load(tmp_path / 'with' / 'epoch-last.pth', weights_only=True)['model']['sd']
    b = torch.load(tmp_path / 'without' / 'epoch-last.pth', weights_only=True)['model']['sd']
    assert all(torch.equal(v, b[k]) for k, v in a.items())


def _assert_same_run(a, b):
    ca = torch.load(a / 'epoch-last.pth', weights_only=True)
    cb = torch.load(b / 'epoch-last.pth', weights_only=True)
    assert ca['epoch'] == cb['epoch']
    for k, v in ca['model']['sd'].items():
        assert torch.equal(v, cb['model']['sd'][k]), k
    for i, state in ca['optimizer']['sd']['state'].items():
        for k, v in state.items():
            assert torch.equal(v, cb['optimizer']['sd']['state'][i][k]), (i, k)
    assert ca['optimizer']['sd']['param_groups'] == cb['optimizer']['sd']['param_groups']
    la, lb = read_log(a), read_log(b)
    assert [r['train_loss'] for r in la] == [r['train_loss'] for r in lb]
    assert [r['val_psnr'] for r in la] == [r['val_psnr'] for r in lb]


def test_resume_is_bit_exact(straight, tmp_path):
    run(make_config(epoch_max=1), tmp_path)  # "interrupted" after epoch 1
    run(make_config(epoch_max=2), tmp_path, resume=True)
    _assert_same_run(straight, tmp_path)


def test_resume_is_bit_exact_with_workers(tmp_path):
    config = make_config(epoch_max=2)
    run(config, tmp_path / 'a', workers=2)
    run(make_config(epoch_max=1), tmp_path / 'b', workers=2)
    run(config, tmp_path / 'b', resume=True, workers=2)
    _assert_same_run(tmp_path / 'a', tmp_path / 'b')


def test_resume_from_a_config_path(straight, tmp_path):
    """The official way: ``resume: <checkpoint>`` in the config."""
    run(make_config(epoch_max=1), tmp_path / 'first')
    run(make_config(epoch_max=2, resume=str(tmp_path / 'first' / 'epoch-last.pth')),
        tmp_path / 'second')
    a = torch.load(straight / 'epoch-last.pth', weights_only=True)['model']['sd']
    b = torch.load(tmp_path / 'second' / 'epoch-last.pth', weights_only=True)['model']['sd']
    assert all(torch.equal(v, b[k]) for k, v in a.items())


def test_existing_run_is_not_overwritten(straight):
    with pytest.raises(ValueError, match='--resume'):
        run(make_config(), straight)


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match='nothing to resume'):
        run(make_config(), tmp_path, resume=True)


def test_loss_decreases_on_a_tiny_overfit_problem(tmp_path):
    random.seed(0)
    crops = RandomCrops(smooth_images(1), repeat=4)
    fixed = [crops[i] for i in range(len(crops))]  # the same 4 crops every epoch
    config = make_config(epoch_max=20, lr=5e-3, multi_step_lr=None, val_dataset=None)
    run(config, tmp_path, train_data=fixed, val_data=None)
    losses = [r['train_loss'] for r in read_log(tmp_path)]
    assert max(losses[-3:]) < 0.5 * losses[0], losses


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    data = Poisoned()
    config = make_config(epoch_max=1, val_dataset=None, train_dataset={'batch_size': 2})
    run(config, tmp_path, train_data=data, val_data=None)
    good = torch.load(tmp_path / 'epoch-last.pth', weights_only=True)
    data.poisoned = True
    # The step that draws item 5 in epoch 2, from the sampler's own permutation.
    sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=0)
    sampler.set_epoch(2)
    step = list(sampler).index(data.bad) // 2 + 1
    with pytest.raises(TrainingDiverged, match=f'epoch 2, step {step} of 4'):
        run(dict(config, epoch_max=2), tmp_path, resume=True, train_data=data, val_data=None)
    kept = torch.load(tmp_path / 'epoch-last.pth', weights_only=True)
    assert kept['epoch'] == 1
    assert all(torch.equal(v, kept['model']['sd'][k]) for k, v in good['model']['sd'].items())
    assert len(read_log(tmp_path)) == 1


def test_nan_in_the_first_epoch_says_no_checkpoint(tmp_path):
    data = Poisoned()
    data.poisoned = True
    config = make_config(epoch_max=1, val_dataset=None, train_dataset={'batch_size': 2})
    with pytest.raises(TrainingDiverged, match='No checkpoint was written yet'):
        run(config, tmp_path, train_data=data, val_data=None)
    assert not (tmp_path / 'epoch-last.pth').exists()


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    config = make_config(epoch_max=1, val_dataset=None)
    run(config, tmp_path, val_data=None)
    before = (tmp_path / 'epoch-last.pth').read_bytes()

    def crash(obj, f, *args, **kwargs):  # half a file, then the machine "dies"
        f.write(b'PK\x03\x04 partial')
        raise OSError('simulated crash mid-write')

    monkeypatch.setattr(torch, 'save', crash)
    with pytest.raises(OSError, match='simulated crash'):
        run(dict(config, epoch_max=2), tmp_path, resume=True, val_data=None)
    monkeypatch.undo()
    assert (tmp_path / 'epoch-last.pth').read_bytes() == before
    assert load_model(tmp_path / 'epoch-last.pth') is not None
    assert not [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]


def test_amp_on_cpu_trains_in_bfloat16(tmp_path):
    """CPU autocast runs the model in bfloat16; the loss, gradients and weights stay float32
    and finite, and the run lands near the float32 one."""
    from liif_core import make_model
    model = make_model(TINY_MODEL)
    item = RandomCrops(smooth_images(1))[0]
    inputs = item['inp'][None] * 2 - 1, item['coord'][None], item['cell'][None]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        pred = model(*inputs)
    with torch.no_grad():
        exact = model(*inputs)
    # bfloat16's 8-bit mantissa: close to float32, and not equal to it.
    assert 0 < (pred.float() - exact).abs().max() < 0.05
    loss = torch.nn.functional.l1_loss(pred.float(), item['gt'][None] * 2 - 1)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all()
               for g in grads)

    run(make_config(), tmp_path / 'bf16', amp=True)
    ckpt = torch.load(tmp_path / 'bf16' / 'epoch-last.pth', weights_only=True)
    assert 'grad_scaler' not in ckpt  # bfloat16 needs no gradient scaling
    assert all(v.dtype == torch.float32 for v in ckpt['model']['sd'].values())
    run(make_config(), tmp_path / 'fp32')
    bf16, fp32 = read_log(tmp_path / 'bf16'), read_log(tmp_path / 'fp32')
    assert bf16[-1]['val_psnr_bicubic'] == fp32[-1]['val_psnr_bicubic']  # the same crops
    assert bf16[-1]['val_psnr'] == pytest.approx(fp32[-1]['val_psnr'], abs=0.5)
    assert bf16[-1]['train_loss'] != fp32[-1]['train_loss']  # it did run in bfloat16


def test_amp_float16_scales_gradients_and_resumes(tmp_path):
    run(make_config(epoch_max=1), tmp_path, amp='fp16')
    ckpt = torch.load(tmp_path / 'epoch-last.pth', weights_only=True)
    assert ckpt['grad_scaler']['scale'] > 1
    run(make_config(epoch_max=2), tmp_path, amp='fp16', resume=True)
    assert all(math.isfinite(r['train_loss']) for r in read_log(tmp_path))
    with pytest.raises(ValueError, match='bf16'):
        run(make_config(), tmp_path / 'bad', amp='float8')


def test_validation_crops_do_not_depend_on_workers(tmp_path):
    """The validation crops are drawn in the training process: bicubic, scored on them, gets
    the same PSNR whether the training data come from the process or from workers."""
    run(make_config(epoch_max=1), tmp_path / 'w0', workers=0)
    run(make_config(epoch_max=1), tmp_path / 'w1', workers=1)
    w0, w1 = read_log(tmp_path / 'w0'), read_log(tmp_path / 'w1')
    assert w0[0]['val_psnr_bicubic'] == w1[0]['val_psnr_bicubic']
    assert w0[0]['train_loss'] != w1[0]['train_loss']  # the training crops did change


def test_losses_read_back_in_blocks_give_the_same_log_and_nan_step(tmp_path, monkeypatch):
    """On an accelerator the losses are read every LOSS_READ_STEPS steps; the log, and the step
    a NaN is reported at, are those of reading every step."""
    import liif_core.train as train_module
    data = Poisoned()
    config = make_config(epoch_max=1, val_dataset=None, train_dataset={'batch_size': 2})
    run(config, tmp_path / 'each', train_data=data, val_data=None)
    monkeypatch.setattr(train_module, 'loss_read_steps', lambda device: 3)  # as on a GPU
    run(config, tmp_path / 'blocks', train_data=data, val_data=None)
    assert read_log(tmp_path / 'each')[0]['train_loss'] == \
        read_log(tmp_path / 'blocks')[0]['train_loss']
    data.poisoned = True
    sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=0)
    sampler.set_epoch(1)
    step = list(sampler).index(data.bad) // 2 + 1
    with pytest.raises(TrainingDiverged, match=f'epoch 1, step {step} of 4'):
        run(config, tmp_path / 'nan', train_data=data, val_data=None)


def write_image_folder(folder, n=3, size=40):
    from PIL import Image
    folder.mkdir(parents=True)
    for i, img in enumerate(smooth_images(n, size, seed=i) for i in range(n)):
        pixels = (img[0] * 255).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(pixels).save(folder / f'{i:04d}.png')


def test_cli_trains_an_official_style_config_and_resumes(tmp_path, monkeypatch):
    from liif_core.cli import main as cli_main
    write_image_folder(tmp_path / 'load' / 'photos')
    section = {'dataset': {'name': 'image-folder',
                           'args': {'root_path': './load/photos', 'repeat': 2,
                                    'cache': 'in_memory'}},
               'wrapper': {'name': 'sr-implicit-downsampled',
                           'args': {'inp_size': 12, 'scale_max': 3, 'augment': True,
                                    'sample_q': 48}},
               'batch_size': 2}
    config = make_config(epoch_max=1, train_dataset=section, val_dataset=section)
    (tmp_path / 'tiny.yaml').write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path / 'load')  # ./load/... resolves only through --data-root
    args = ['train', str(tmp_path / 'tiny.yaml'), '--data-root', str(tmp_path / 'load'),
            '--num-workers', '0', '--device', 'cpu']
    assert cli_main(args) == 0
    save_dir = tmp_path / 'load' / 'save' / '_tiny'  # the official default name
    assert read_log(save_dir)[0]['epoch'] == 1
    assert cli_main(args + ['--resume', '--epochs', '2']) == 0
    assert [r['epoch'] for r in read_log(save_dir)] == [1, 2]
    assert torch.load(save_dir / 'epoch-last.pth', weights_only=True)['epoch'] == 2
    assert cli_main(args) == 1  # the run exists: refused with a one-line error
    # With the real data pipeline too, 1 + 1 epochs equal 2 straight ones.
    assert cli_main(args + ['--epochs', '2', '--save-dir', str(tmp_path / 'straight')]) == 0
    _assert_same_run(tmp_path / 'straight', save_dir)
    # --seed overrides the config's seed: recorded in the run's config, and a different run
    assert cli_main(args + ['--seed', '1', '--save-dir', str(tmp_path / 'seed1')]) == 0
    assert yaml.safe_load((tmp_path / 'seed1' / 'config.yaml').read_text())['seed'] == 1
    assert read_log(tmp_path / 'seed1')[0]['train_loss'] != read_log(save_dir)[0]['train_loss']
    # --amp alone is bfloat16 on CPU; --no-tf32 changes nothing off CUDA
    assert cli_main(args + ['--amp', '--no-tf32', '--save-dir', str(tmp_path / 'amp')]) == 0
    assert torch.backends.cuda.matmul.allow_tf32 is False  # PyTorch's default, left alone
    assert read_log(tmp_path / 'amp')[0]['train_loss'] != read_log(save_dir)[0]['train_loss']


def test_killed_between_checkpoint_and_log_loses_no_line(straight, tmp_path, monkeypatch):
    """A fault injected after epoch 2's checkpoint is written but before its log line: the
    resumed run rewrites log.jsonl from the checkpoint, so no epoch is missing or doubled."""
    from liif_core import train_state
    run(make_config(epoch_max=1), tmp_path)

    def die(save_dir, record):
        raise KeyboardInterrupt  # the process "dies" here

    monkeypatch.setattr(train_state, 'append_log', die)
    with pytest.raises(KeyboardInterrupt):
        run(make_config(epoch_max=3), tmp_path, resume=True)
    monkeypatch.undo()
    assert [r['epoch'] for r in read_log(tmp_path)] == [1]  # epoch 2's line is missing
    run(make_config(epoch_max=3), tmp_path, resume=True)
    log = read_log(tmp_path)
    assert [r['epoch'] for r in log] == [1, 2, 3]
    assert [r['train_loss'] for r in log[:2]] == [r['train_loss'] for r in read_log(straight)]


def test_time_limit_stops_at_an_epoch_and_pieces_equal_one_run(straight, tmp_path):
    """A time limit shorter than an epoch stops after the first; resuming finishes the run
    with the schedule over all of epoch_max, equal to the uninterrupted run."""
    result = run(make_config(epoch_max=2), tmp_path, time_limit=1e-9)
    assert result['epoch'] == 1
    run(make_config(epoch_max=2), tmp_path, resume=True)
    _assert_same_run(straight, tmp_path)
    pieces = [json.loads(line) for line in (tmp_path / 'pieces.jsonl').read_text().splitlines()]
    assert [p['epoch_start'] for p in pieces] == [1, 2]
    assert all(p['threads'] == 1 and p['torch'] == torch.__version__ and p['cpu']
               and p['precision'] == 'float32' for p in pieces)


def test_init_from_a_checkpoint_starts_from_its_weights(straight, tmp_path):
    """``init: <checkpoint>``: the weights of that run, a fresh optimizer and schedule."""
    run(make_config(epoch_max=1, init=str(straight / 'epoch-last.pth'), lr=0.0,
                    multi_step_lr=None), tmp_path)
    a = torch.load(straight / 'epoch-last.pth', weights_only=True)['model']['sd']
    b = torch.load(tmp_path / 'epoch-last.pth', weights_only=True)
    assert b['epoch'] == 1
    assert all(torch.equal(v, b['model']['sd'][k]) for k, v in a.items())  # lr 0: unchanged
    with pytest.raises(ValueError, match='unknown init .*no such checkpoint'):
        run(make_config(init=str(tmp_path / 'missing.pth')), tmp_path / 'x')
    wrong = dict(TINY_MODEL, args=dict(TINY_MODEL['args'], imnet_spec={
        'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [32]}}))
    with pytest.raises(ValueError, match='does not fit the model'):
        run(make_config(init=str(straight / 'epoch-last.pth'), model=wrong), tmp_path / 'y')
