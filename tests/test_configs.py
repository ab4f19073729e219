"""Every packaged config parses, builds its model, names known datasets with accepted arguments,
and matches the official recipe."""
import inspect
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from liif_core import make_model
from liif_core.configs import find_config, list_configs, load_config
from liif_core.data import DATASETS, make_data
from liif_core.init import apply_init
from liif_core.train_config import ConfigError, TrainConfig

torch.set_num_threads(2)

ALL = list_configs()


def data_sections(config):
    return {k: v for k, v in config.items() if k.endswith('_dataset')}


def test_the_official_set_is_packaged():
    expected = {f'train-div2k/train_{enc}-{kind}' for enc in ('edsr-baseline', 'rdn')
                for kind in ('liif', 'metasr', 'x2')}
    expected |= {f'train-div2k/ablation/train_edsr-baseline-liif-{a}'
                 for a in ('c', 'u', 'e', 'd', 'x2', 'x3', 'x4')}
    expected |= {f'train-celebAHQ/train_celebAHQ-{s}_{k}' for s in ('32-256', '64-128')
                 for k in ('liif', 'upsample')}
    expected |= {f'test/test-div2k-{k}' for k in (2, 3, 4, 6, 12, 18, 24, 30)}
    expected |= {f'test/test-{b}-{k}' for b in ('set5', 'set14', 'b100', 'urban100')
                 for k in (2, 3, 4, 6, 8)}
    expected |= {'test/test-celebAHQ-32-256', 'test/test-celebAHQ-64-128'}
    assert expected <= set(ALL), sorted(expected - set(ALL))


@pytest.mark.parametrize('name', ALL)
def test_config_parses_builds_and_names_known_datasets(name):
    config = load_config(name)
    assert config['data_norm'] == {'inp': {'sub': [0.5], 'div': [0.5]},
                                   'gt': {'sub': [0.5], 'div': [0.5]}}
    if 'model' in config:
        model = make_model(config['model'])
        assert sum(p.numel() for p in model.parameters()) > 0
    sections = data_sections(config)
    assert sections, 'a config needs a train/val or test dataset'
    for section in sections.values():
        for role in ('dataset', 'wrapper'):
            spec = section[role]
            assert spec['name'] in DATASETS, spec['name']
            args = dict(spec.get('args') or {})
            if role == 'wrapper':
                args['dataset'] = None
            inspect.signature(DATASETS[spec['name']]).bind(**args)  # TypeError if not accepted
            for key in ('root_path', 'root_path_1', 'root_path_2', 'split_file'):
                if key in args:
                    assert args[key].startswith('./load/'), args[key]
    if 'celebAHQ' in name and name.startswith('test'):
        assert 'eval_type' not in config and 'eval_bsize' not in config  # plain PSNR, one pass
    elif name.startswith('test'):
        scale = name.rsplit('-', 1)[1]
        if scale.isdigit():
            protocol = 'benchmark' if any(s in name for s in ('set', 'b100', 'urban', 'samples')) \
                else 'div2k'
            assert config['eval_type'] == f'{protocol}-{scale}'
            assert config['eval_bsize'] == 30000 and config['test_dataset']['batch_size'] == 1


def test_the_edsr_baseline_liif_recipe():
    c = load_config('train_edsr-baseline-liif')
    train, val = c['train_dataset'], c['val_dataset']
    assert train['dataset']['args'] == {'root_path': './load/div2k/DIV2K_train_HR', 'repeat': 20,
                                        'cache': 'in_memory'}
    assert train['wrapper'] == {'name': 'sr-implicit-downsampled', 'args': {
        'inp_size': 48, 'scale_max': 4, 'augment': True, 'sample_q': 2304}}
    assert val['dataset']['args'] == {'root_path': './load/div2k/DIV2K_valid_HR', 'first_k': 10,
                                      'repeat': 160, 'cache': 'in_memory'}
    assert val['wrapper']['args'] == {'inp_size': 48, 'scale_max': 4, 'sample_q': 2304}
    assert train['batch_size'] == val['batch_size'] == 16
    assert c['optimizer'] == {'name': 'adam', 'args': {'lr': 1e-4}}
    assert c['multi_step_lr'] == {'milestones': [200, 400, 600, 800], 'gamma': 0.5}
    assert (c['epoch_max'], c['epoch_val'], c['epoch_save']) == (1000, 1, 100)


def flatten(d, prefix=''):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f'{prefix}{k}.'))
        else:
            out[f'{prefix}{k}'] = v
    return out


ABLATIONS = {  # each ablation's only differences from the base config
    'c': {'model.args.cell_decode': False},
    'u': {'model.args.feat_unfold': False},
    'e': {'model.args.local_ensemble': False},
    'd': {'model.args.imnet_spec.args.hidden_list': [256, 256]},
}
for k in (2, 3, 4):
    ABLATIONS[f'x{k}'] = {f'{s}_dataset.wrapper.args.{key}': value for s in ('train', 'val')
                          for key, value in (('scale_min', k), ('scale_max', None))}


@pytest.mark.parametrize('suffix', sorted(ABLATIONS))
def test_ablations_differ_from_the_base_only_as_the_paper_says(suffix):
    base = flatten(load_config('train_edsr-baseline-liif'))
    ablation = flatten(load_config(f'train_edsr-baseline-liif-{suffix}'))
    keys = set(base) | set(ablation)
    diff = {k: ablation.get(k) for k in keys if base.get(k) != ablation.get(k)}
    assert diff == ABLATIONS[suffix]


def test_metasr_and_x2_baselines():
    for enc in ('edsr-baseline', 'rdn'):
        metasr = load_config(f'train_{enc}-metasr')['model']
        assert metasr == {'name': 'metasr', 'args': {'encoder_spec': {
            'name': enc, 'args': {'no_upsampling': True}}}}
        x2 = load_config(f'train_{enc}-x2')
        assert x2['model'] == {'name': 'liif', 'args': {'encoder_spec': {
            'name': enc, 'args': {'scale': 2}}}}
        assert x2['train_dataset']['wrapper']['name'] == 'sr-implicit-paired'


def test_load_config_names_and_paths(tmp_path):
    assert find_config('configs/test/test-div2k-2.yaml') == 'test/test-div2k-2'
    assert find_config('test-set5-8') == 'test/test-set5-8'
    path = tmp_path / 'mine.yaml'
    path.write_text('model: {name: mlp}\n')
    assert load_config(str(path)) == {'model': {'name': 'mlp'}}
    with pytest.raises(FileNotFoundError, match='did you mean'):
        load_config('test-div2k-5')
    path.write_text('- just a list\n')
    with pytest.raises(ValueError, match='mapping'):
        load_config(str(path))


@pytest.mark.parametrize('name', [n for n in ALL if n.startswith('cpu/')])
def test_cpu_configs_build_on_standin_layout(name, tmp_path):
    """The CPU configs read ./load/standin: build them on a small fake of that layout."""
    rng = np.random.default_rng(0)
    for split in ('train', 'valid', 'valid_tune', 'valid_report'):
        os.makedirs(tmp_path / 'standin' / split)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (200, 216, 3), dtype=np.uint8)).save(
                tmp_path / 'standin' / split / f'{i}.png')
    config = load_config(name)
    model = apply_init(make_model(config['model']), config.get('init'))  # shipped weights too
    for section in data_sections(config).values():
        data = make_data(section, data_root=str(tmp_path))
        batch = next(iter(torch.utils.data.DataLoader(data, batch_size=1)))  # one item: fast
        with torch.no_grad():
            pred = model((batch['inp'] - 0.5) / 0.5, batch['coord'], batch['cell'])
        assert pred.shape == batch['gt'].shape


@pytest.mark.parametrize('name', [n for n in ALL if 'epoch_max' in load_config(n)])
def test_every_training_config_is_a_train_config(name):
    config = load_config(name)
    cfg = TrainConfig.from_dict(config)
    assert cfg.epoch_max == config['epoch_max'] and cfg.model == config['model']


def test_train_config_names_every_bad_key_at_once():
    config = load_config('train-div2k/train_edsr-baseline-liif')
    del config['model'], config['epoch_max']
    config.update(epochs=10, lr=1e-4)
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_dict(config)
    for part in ("missing key 'model'", "missing key 'epoch_max'", "unknown key 'epochs'",
                 "unknown key 'lr'"):
        assert part in str(error.value)


BAD_TRAIN_CONFIGS = [  # (change to a valid config, part of the one-line message)
    (lambda c: c.update(epoch_max='three'), "epoch_max must be an integer >= 1, got 'three'"),
    (lambda c: c['train_dataset'].pop('batch_size'), 'train_dataset needs a batch_size'),
    (lambda c: c.update(epoch_val=0), 'epoch_val must be an integer >= 1, got 0'),
    (lambda c: c['optimizer']['args'].update(lr='fast'), "optimizer.args.lr must be a number"),
    (lambda c: c.update(multi_step_lr={'milestones': 5}), 'milestones must be a list'),
    (lambda c: c.update(model=[1, 2]), 'model must be a mapping'),
    (lambda c: c.update(optimizer={'args': {}}), 'optimizer needs a name'),
    (lambda c: c['train_dataset']['wrapper']['args'].update(inp_size=0),
     'sr-implicit-downsampled: inp_size must be a positive integer, got 0'),
    (lambda c: c.update(init='no-such-weights'), "unknown init 'no-such-weights'"),
]


@pytest.mark.parametrize('change, message', BAD_TRAIN_CONFIGS)
def test_liif_train_refuses_a_bad_config_in_one_line(change, message, tmp_path, capsys):
    """Through the command line: exit 1, one line naming the problem, no traceback, and no
    run folder left behind."""
    from liif_core.cli import main
    config = load_config('cpu/train_liif-tiny')
    change(config)
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump(config))
    save_dir = tmp_path / 'run'
    assert main(['train', str(path), '--save-dir', str(save_dir), '--device', 'cpu',
                 '--data-root', str(Path(__file__).parents[1] / 'data')]) == 1
    err = capsys.readouterr().err
    assert err.startswith('liif train: error: ') and message in err, err
    assert 'Traceback' not in err and len(err.strip().splitlines()) == 1
    assert not (save_dir / 'epoch-last.pth').exists()
