"""Loading and saving checkpoints in the official layout, and every way a file can be wrong."""
import os
import re

import pytest
import torch

from liif_core import CheckpointError, load_model, make_model, save_model

SPEC = {'name': 'liif', 'args': {
    'encoder_spec': {'name': 'edsr-baseline', 'args': {'n_resblocks': 1, 'n_feats': 4,
                                                        'no_upsampling': True}},
    'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [8]}}}}


@pytest.fixture
def ckpt():
    model = make_model(SPEC)
    return {'model': {'name': 'liif', 'args': SPEC['args'], 'sd': model.state_dict()}}


def test_reference_checkpoint_loads_strictly(reference_ckpt_path):
    model = load_model(reference_ckpt_path)
    assert type(model).__name__ == 'LIIF' and not model.training
    assert model.imnet.in_dim == 580  # derived, not stored in the checkpoint


def test_round_trip_with_training_entries(tmp_path, ckpt):
    model = make_model(SPEC)
    path = tmp_path / 'epoch-last.pth'
    save_model(model, path, optimizer={'name': 'adam', 'args': {'lr': 1e-4}, 'sd': {}}, epoch=3)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {'model', 'optimizer', 'epoch'} and raw['epoch'] == 3
    assert raw['model']['args'] == SPEC['args']  # verbatim: no injected in_dim
    loaded = load_model(path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert not [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]


def test_map_location_is_honoured(tmp_path):
    save_model(make_model(SPEC), tmp_path / 'm.pth')
    model = load_model(tmp_path / 'm.pth', map_location=torch.device('cpu'))
    assert all(p.device.type == 'cpu' for p in model.parameters())


def test_missing_key_is_named(ckpt):
    del ckpt['model']['sd']['imnet.layers.0.bias']
    with pytest.raises(CheckpointError, match=r'missing keys: imnet\.layers\.0\.bias'):
        load_model(ckpt)


def test_unexpected_key_is_named(ckpt):
    ckpt['model']['sd']['imnet.layers.9.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r'unexpected keys: imnet\.layers\.9\.weight'):
        load_model(ckpt)


def test_wrong_shape_is_named(ckpt):
    ckpt['model']['sd']['imnet.layers.0.weight'] = torch.zeros(8, 99)
    with pytest.raises(CheckpointError, match=r'imnet\.layers\.0\.weight: checkpoint \(8, 99\), model \(8, 40\)'):
        load_model(ckpt)


def test_unknown_model_name(tmp_path, ckpt):
    ckpt['model']['name'] = 'liif-v9'
    torch.save(ckpt, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointError, match=r"bad\.pth.*unknown model name 'liif-v9'"):
        load_model(tmp_path / 'bad.pth')


def test_wrong_layout(tmp_path):
    torch.save({'state_dict': {}}, tmp_path / 'other.pth')
    with pytest.raises(CheckpointError, match=r"other\.pth: not a LIIF checkpoint.*state_dict"):
        load_model(tmp_path / 'other.pth')


@pytest.mark.parametrize('content', [b'hello, not a checkpoint\n', bytes(range(256)) * 4, b''])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / 'junk.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r'junk\.pth: not a PyTorch checkpoint'):
        load_model(path)


def test_truncated_checkpoint(tmp_path, reference_ckpt_path):
    path = tmp_path / 'cut.pth'
    path.write_bytes(reference_ckpt_path.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match=r'cut\.pth'):
        load_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match='no such checkpoint file'):
        load_model(tmp_path / 'nowhere.pth')


class RunsCode:
    def __reduce__(self):
        return (os.system, ('echo pwned > "$PWNED"',))


def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / 'pwned'
    monkeypatch.setenv('PWNED', str(marker))
    path = tmp_path / 'evil.pth'
    torch.save({'model': RunsCode()}, path)
    with pytest.raises(CheckpointError, match=r'evil\.pth: refused to load'):
        load_model(path)
    assert not marker.exists()


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / 'epoch-last.pth'
    save_model(make_model(SPEC), path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError('disk full')
    monkeypatch.setattr(torch, 'save', crash)
    with pytest.raises(OSError, match='disk full'):
        save_model(make_model(SPEC), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ['epoch-last.pth']


def test_saved_file_has_the_usual_mode(tmp_path):
    mask = os.umask(0o022)
    try:
        save_model(make_model(SPEC), tmp_path / 'm.pth')
    finally:
        os.umask(mask)
    assert (tmp_path / 'm.pth').stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize('value, named', [
    ([1.0, 2.0], 'not tensors: encoder.head.0.weight (list)'),
    (0.5, 'not tensors: encoder.head.0.weight (float)'),
    (None, 'not tensors: encoder.head.0.weight (NoneType)'),
    (torch.zeros(4, 3, 3, 3).to_sparse(), 'not dense tensors with data: encoder.head.0.weight '
                                          '(torch.sparse_coo, cpu)'),
    (torch.empty(4, 3, 3, 3, device='meta'), 'not dense tensors with data: '
                                             'encoder.head.0.weight (torch.strided, meta)'),
])
def test_state_dict_values_that_are_not_weights_are_named(ckpt, value, named):
    ckpt['model']['sd']['encoder.head.0.weight'] = value
    with pytest.raises(CheckpointError, match=re.escape("checkpoint dict: the state dict does "
                                                        f"not fit the model 'liif': {named}")):
        load_model(ckpt)


def test_a_device_that_cannot_run_is_named_not_the_file(ckpt):
    with pytest.raises(ValueError, match="^device 'meta' holds no data"):
        load_model(ckpt, map_location='meta')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="^device 'cuda': no CUDA GPU is usable here"):
            load_model(ckpt, map_location='cuda')


def test_data_norm_round_trip_and_a_damaged_one(tmp_path, ckpt):
    """The training normalisation goes in the top-level ``data_norm`` (the official loader
    reads only ``['model']``) and comes back as ``model.data_norm``."""
    norm = {'inp': {'sub': [0], 'div': [1]}, 'gt': {'sub': [0], 'div': [1]}}
    model = load_model({**ckpt, 'data_norm': norm})
    assert model.data_norm == norm
    save_model(model, tmp_path / 'w.pth')
    assert torch.load(tmp_path / 'w.pth', weights_only=True)['data_norm'] == norm
    with pytest.raises(CheckpointError, match=r'^checkpoint dict: its data_norm is damaged: '
                                              r'data_norm.gt must be a mapping'):
        load_model({**ckpt, 'data_norm': {'inp': norm['inp']}})


def test_a_folder_or_a_pipe_is_named_as_such(tmp_path):
    os.mkfifo(tmp_path / 'pipe.pth')
    with pytest.raises(CheckpointError, match='pipe.pth: not a regular file'):
        load_model(tmp_path / 'pipe.pth')
    with pytest.raises(CheckpointError, match=f'^{tmp_path}: a folder, not a checkpoint file$'):
        load_model(tmp_path)
