"""The shipped weights: pinned, loadable as an official checkpoint, the default of upscale."""
import json
import shutil

import pytest
import torch

from liif_core import LIIF, paper, upscale
from liif_core.checkpoint import CheckpointError, load_model
from liif_core.configs import load_config
from liif_core.pretrained import (DEFAULT_MODEL, PRETRAINED, file_sha256, get_pretrained,
                                  load_pretrained, resolve_model, training_log)
import liif_core.pretrained as pretrained
from liif_core.render import NO_DATA_NORM


def test_every_shipped_file_matches_its_pinned_sha256():
    for entry in PRETRAINED.values():
        assert file_sha256(entry.path) == entry.sha256, entry.name
        assert entry.log_path.is_file(), entry.name


def test_shipped_weights_are_the_official_layout_of_their_config():
    entry = get_pretrained()
    ckpt = torch.load(entry.path, map_location='cpu', weights_only=True)
    assert set(ckpt) <= {'model', 'epoch'}  # no optimizer state shipped
    assert ckpt['model']['name'] == 'liif'
    assert ckpt['model']['args'] == load_config(entry.config)['model']['args']
    model = load_pretrained()
    assert isinstance(model, LIIF) and not model.training
    # EDSR-baseline encoder (1,220,440, as in test_models) + MLP 580 -> 256 x4 -> 3, where
    # 580 = 9 x 64 unfolded features + 2 relative coordinates + 2 cell sizes.
    mlp = (580 * 256 + 256) + 3 * (256 * 256 + 256) + (256 * 3 + 3)
    assert sum(p.numel() for p in model.parameters()) == 1_220_440 + mlp


def test_training_log_has_one_record_per_epoch_up_to_the_shipped_one():
    log = training_log()
    epochs = [r['epoch'] for r in log]
    assert epochs == list(range(1, len(log) + 1))
    shipped_epoch = torch.load(get_pretrained().path, weights_only=True)['epoch']
    assert epochs[-1] == shipped_epoch
    assert all({'train_loss', 'lr', 'time'} <= set(r) for r in log)
    # validation every epoch_val epochs, and at the last one
    every = load_config(get_pretrained().config)['epoch_val']
    validated = [r['epoch'] for r in log if {'val_psnr', 'val_psnr_bicubic'} <= set(r)]
    assert validated == [e for e in epochs if e % every == 0]
    assert validated[-1] == shipped_epoch


def test_damaged_weights_are_refused(tmp_path, monkeypatch):
    entry = get_pretrained()
    shutil.copyfile(entry.path, tmp_path / entry.path.name)
    with open(tmp_path / entry.path.name, 'r+b') as f:
        f.seek(-100, 2)
        f.write(b'\0' * 10)
    monkeypatch.setattr(pretrained, 'WEIGHTS_DIR', tmp_path)
    with pytest.raises(CheckpointError, match='does not match the pinned'):
        load_pretrained()
    (tmp_path / entry.path.name).unlink()
    with pytest.raises(CheckpointError, match='missing from this installation'):
        load_pretrained()


def test_resolve_model_names_paths_and_default(tmp_path):
    assert resolve_model(None).spec == load_pretrained().spec
    assert resolve_model(DEFAULT_MODEL).spec == load_pretrained().spec
    with pytest.raises(CheckpointError, match='nor the name of shipped weights'):
        resolve_model(tmp_path / 'nothing.pth')
    with pytest.raises(ValueError, match=f'available: .*{DEFAULT_MODEL}'):
        get_pretrained('edsr')


def test_old_names_still_work_in_python(recwarn):
    assert DEFAULT_MODEL == 'edsr_baseline_liif.standin_long'
    for old, new in pretrained.OLD_NAMES.items():
        assert pretrained.renamed(old) == new
    assert get_pretrained('edsr-baseline-liif-standin') == PRETRAINED['edsr_baseline_liif.standin']
    assert training_log('edsr-baseline-liif-standin-long') == training_log()
    assert resolve_model('edsr-baseline-liif-standin').spec == load_pretrained().spec
    assert pretrained.renamed(DEFAULT_MODEL) is None
    assert len(recwarn) == 0  # the book builds with warnings as errors


def test_upscale_without_a_model_uses_the_shipped_weights():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    image = torch.rand(3, 10, 12)
    out = upscale(image, scale=2.5)
    assert out.shape == (3, 25, 30)
    torch.testing.assert_close(out, upscale(image, scale=2.5, model=load_pretrained()),
                               rtol=0, atol=0)


def test_export_strips_the_optimizer_and_copies_the_log(tmp_path, monkeypatch):
    run = tmp_path / 'run'
    run.mkdir()
    model = load_pretrained()
    from liif_core.checkpoint import save_model
    save_model(model, run / 'epoch-last.pth', epoch=7, data_norm=NO_DATA_NORM,
               optimizer={'name': 'adam', 'args': {'lr': 1e-4}, 'sd': {'state': {}}})
    (run / 'log.jsonl').write_text(json.dumps({'epoch': 7}) + '\n')
    monkeypatch.setattr(pretrained, 'WEIGHTS_DIR', tmp_path / 'weights')
    digest = pretrained.ship(run / 'epoch-last.pth')
    entry = get_pretrained()
    assert digest == file_sha256(entry.path)
    ckpt = torch.load(entry.path, weights_only=True)
    assert set(ckpt) == {'model', 'epoch', 'data_norm'} and ckpt['epoch'] == 7
    assert entry.log_path.read_text() == '{"epoch": 7}\n'
    assert load_model(entry.path).data_norm == NO_DATA_NORM  # the normalisation travels with the weights


def test_paper_tables_lookup():
    assert paper.paper_psnr('EDSR-baseline-LIIF', 30) == 20.48
    assert paper.paper_psnr('Bicubic', 2) == 31.01
    assert paper.paper_psnr('EDSR-baseline-LIIF', 2.5) is None
    assert paper.paper_psnr('LIIF(-c)', 2, table='table3') == 34.53
    with pytest.raises(ValueError, match='no row'):
        paper.paper_psnr('SwinIR', 2)
    assert paper.paper_psnr('RDN-LIIF', 8, table='table2', dataset='Urban100') == 22.79
    with pytest.raises(ValueError, match='table2 needs a dataset'):
        paper.paper_psnr('RDN-LIIF', 2, table='table2')
    for rows, scales in ((paper.TABLE1, paper.TABLE1_SCALES), (paper.TABLE3, paper.TABLE3_SCALES),
                         *((rows, paper.TABLE2_SCALES) for rows in paper.TABLE2.values())):
        assert all(len(v) == len(scales) for v in rows.values())
