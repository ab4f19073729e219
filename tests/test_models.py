"""Construction, shapes, flags, batching and devices for every model in the registry."""
from pathlib import Path

import pytest
import torch

from liif_core import (LIIF, MODELS, CheckpointError, MetaSR, ModelSpecError, batched_predict,
                       create_model, list_models, load_model, make_cell, make_coord, make_model,
                       save_model)

TINY_EDSR = {'name': 'edsr-baseline', 'args': {'n_resblocks': 2, 'n_feats': 8,
                                                'no_upsampling': True}}
TINY_MLP = {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [16, 16]}}
FLAGS = [dict(local_ensemble=e, feat_unfold=u, cell_decode=c)
         for e in (True, False) for u in (True, False) for c in (True, False)]


def tiny_liif(**flags):
    return LIIF(TINY_EDSR, TINY_MLP, **flags)


def queries(B, H, W):
    coord = make_coord((H, W)).unsqueeze(0).expand(B, -1, -1).contiguous()
    return coord, make_cell(coord, (H, W))


def keys_of(name):
    path = Path(__file__).parent / 'reference' / name
    return [(k, tuple(int(d) for d in s.strip('()').split(',') if d))
            for k, s in (line.split() for line in path.read_text().splitlines())]


@pytest.mark.parametrize('keys, encoder', [('edsr_liif_keys.txt', 'edsr-baseline'),
                                           ('rdn_liif_keys.txt', 'rdn')])
def test_state_dict_layout_equals_official(keys, encoder):
    model = make_model({'name': 'liif', 'args': {
        'encoder_spec': {'name': encoder, 'args': {'no_upsampling': True}},
        'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [256] * 4}}}})
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert got == keys_of(keys)


def test_parameter_counts_equal_official():
    edsr = make_model({'name': 'edsr-baseline', 'args': {'no_upsampling': True}})
    rdn = make_model({'name': 'rdn', 'args': {'no_upsampling': True}})
    assert sum(p.numel() for p in edsr.parameters()) == 1_220_440
    assert sum(p.numel() for p in rdn.parameters()) == 21_973_952


@pytest.mark.parametrize('flags', FLAGS, ids=lambda f: '-'.join(k for k, v in f.items() if v) or 'none')
def test_flags_shapes_and_in_dim(flags):
    model = tiny_liif(**flags)
    expected_in = 8 * (9 if flags['feat_unfold'] else 1) + 2 + (2 if flags['cell_decode'] else 0)
    assert model.imnet.in_dim == expected_in
    coord, cell = queries(2, 7, 5)
    out = model(torch.randn(2, 3, 4, 3), coord, cell)
    assert out.shape == (2, 35, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize('flags', FLAGS, ids=lambda f: '-'.join(k for k, v in f.items() if v) or 'none')
def test_every_parameter_gets_a_gradient(flags):
    model = tiny_liif(**flags)
    coord, cell = queries(2, 6, 6)
    model(torch.randn(2, 3, 3, 3), coord, cell).square().mean().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_cell_is_ignored_without_cell_decode():
    model = tiny_liif(cell_decode=False)
    coord, cell = queries(1, 9, 9)
    inp = torch.randn(1, 3, 3, 3)
    assert torch.equal(model(inp, coord, cell), model(inp, coord, None))
    with pytest.raises(ValueError, match='cell'):
        tiny_liif()(inp, coord, None)


def test_local_ensemble_off_returns_the_single_prediction():
    """Without the ensemble the area weight is area / area = 1 exactly: output == MLP output."""
    model = tiny_liif(local_ensemble=False, feat_unfold=False, cell_decode=False)
    inp = torch.randn(1, 3, 4, 4)
    coord, _ = queries(1, 4, 4)  # output pixels coincide with code centres: rel = 0
    out = model(inp, coord)
    codes = model.feat.flatten(2).transpose(1, 2)  # (1, 16, C)
    expected = model.imnet(torch.cat([codes, torch.zeros(1, 16, 2)], dim=-1))
    assert torch.allclose(out, expected, atol=1e-6)


def test_no_decoder_path_samples_the_encoder_output():
    model = LIIF({'name': 'edsr-baseline', 'args': {'n_resblocks': 1, 'n_feats': 8, 'scale': 2}})
    assert model.imnet is None
    inp = torch.randn(1, 3, 5, 4)
    coord, cell = queries(1, 10, 8)  # the encoder upsamples x2: one query per output pixel
    out = model(inp, coord, cell)
    expected = model.feat.flatten(2).transpose(1, 2)  # (1, 80, 3)
    assert torch.equal(out, expected)
    # Zero padding outside the grid; +1.0 is past the end on an even axis, on the border if odd.
    edge = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    got = model.query_rgb(edge)
    assert torch.all(got[0, 0] == 0)  # rows: 10 (even)
    assert torch.all(got[0, 1] == 0)  # cols: 8 (even)


@pytest.mark.parametrize('bsize', [1, 7, 64, 10_000])
def test_batched_predict_equals_one_call(bsize):
    model = tiny_liif()
    inp = torch.randn(2, 3, 5, 6)
    coord, cell = queries(2, 13, 11)
    with torch.no_grad():
        full = model(inp, coord, cell)
        chunked = batched_predict(model, inp, coord, cell, bsize)
    assert torch.allclose(chunked, full, atol=1e-6, rtol=0)


@pytest.mark.parametrize('shape', [(1, 1), (1, 9), (9, 1), (3, 17)])
def test_tiny_and_non_square_inputs(shape):
    model = tiny_liif()
    coord, cell = queries(1, shape[0] * 3, shape[1] * 2)
    with torch.no_grad():
        fast = model(torch.randn(1, 3, *shape), coord, cell)
        ref = model.query_rgb(coord, cell, fast=False)
    assert fast.shape == (1, shape[0] * shape[1] * 6, 3)
    assert (fast - ref).abs().max() <= 1e-5


def test_batch_items_are_independent():
    model = tiny_liif()
    inp = torch.randn(3, 3, 4, 5)
    coord = torch.rand(3, 50, 2) * 2 - 1
    cell = torch.full_like(coord, 0.1)
    with torch.no_grad():
        together = model(inp, coord, cell)
        alone = torch.cat([model(inp[i:i + 1], coord[i:i + 1], cell[i:i + 1]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-6)


def test_metasr_shapes_and_layout():
    model = make_model({'name': 'metasr', 'args': {'encoder_spec': TINY_EDSR}})
    assert isinstance(model, MetaSR)
    sd = model.state_dict()
    assert sd['imnet.layers.0.weight'].shape == (256, 3)
    assert sd['imnet.layers.2.weight'].shape == (8 * 9 * 3, 256)
    coord, cell = queries(2, 9, 7)
    out = model(torch.randn(2, 3, 3, 3), coord, cell)
    assert out.shape == (2, 63, 3) and torch.isfinite(out).all()


def test_metasr_is_linear_in_the_code():
    """The prediction is code x W(rel, scale): doubling the codes doubles the output."""
    model = make_model({'name': 'metasr', 'args': {'encoder_spec': TINY_EDSR}})
    coord, cell = queries(1, 8, 8)
    feat = torch.randn(1, 8, 4, 4)
    assert torch.allclose(model.decode(2 * feat, coord, cell), 2 * model.decode(feat, coord, cell),
                          atol=1e-5)


def test_registry_errors_name_the_problem():
    with pytest.raises(ModelSpecError, match="unknown model name 'liff'.*liif"):
        make_model({'name': 'liff', 'args': {}})
    with pytest.raises(ModelSpecError, match="'edsr-baseline'.*n_blocks"):
        make_model({'name': 'edsr-baseline', 'args': {'n_blocks': 3}})
    assert set(MODELS) >= {'liif', 'metasr', 'mlp', 'edsr-baseline', 'edsr', 'rdn'}


def test_rdn_and_edsr_upsampling_tails():
    for spec, out in [({'name': 'edsr-baseline', 'args': {'n_resblocks': 1, 'scale': 3}}, (1, 3, 12, 15)),
                      ({'name': 'rdn', 'args': {'RDNconfig': 'A', 'scale': 4}}, (1, 3, 16, 20))]:
        assert make_model(spec)(torch.randn(1, 3, 4, 5)).shape == out


def test_no_hard_coded_devices():
    """Devices follow the data: no module of liif_core names a CUDA device."""
    src = Path(__file__).parents[1] / 'liif_core'
    for path in src.rglob('*.py'):
        assert '.cuda(' not in path.read_text(), path


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_gpu_matches_cpu():
    model = tiny_liif()
    coord, cell = queries(1, 9, 9)
    inp = torch.randn(1, 3, 3, 3)
    with torch.no_grad():
        cpu = model(inp, coord, cell)
        gpu = model.cuda()(inp.cuda(), coord.cuda(), cell.cuda()).cpu()
    assert (cpu - gpu).abs().max() <= 1e-4


@pytest.mark.parametrize('name', list_models())
def test_every_architecture_builds_runs_learns_and_round_trips(name, tmp_path):
    """Build, forward at batch 2, a gradient for every parameter, state-dict round trip.

    Tiny inputs keep RDN-LIIF (22 M parameters) cheap: a 3x3 image and 12 queries."""
    torch.manual_seed(0)
    model = create_model(name)
    assert model.spec == make_model(model.spec).spec
    inp = torch.rand(2, 3, 3, 3) * 2 - 1
    coord, cell = queries(2, 4, 3)
    out = model(inp, coord, cell)
    assert out.shape == (2, 12, 3) and torch.isfinite(out).all()
    out.abs().mean().backward()
    missing = [k for k, p in model.named_parameters()  # the frozen RGB mean shifts excepted
               if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not missing, missing
    save_model(model, tmp_path / 'model.pth')
    loaded = load_model(tmp_path / 'model.pth')
    with torch.no_grad():
        assert torch.equal(loaded(inp, coord, cell), model.eval()(inp, coord, cell))


def test_architectures_are_the_official_specs():
    assert create_model('edsr_baseline_liif').spec == make_model({'name': 'liif', 'args': {
        'encoder_spec': {'name': 'edsr-baseline', 'args': {'no_upsampling': True}},
        'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [256] * 4}}}}).spec
    assert create_model('edsr_baseline_liif', cell_decode=False).imnet.in_dim == 64 * 9 + 2
    assert set(list_models()) >= {'edsr_baseline_liif', 'rdn_liif', 'edsr_baseline_metasr'}
    with pytest.raises(ValueError, match="unknown architecture 'edsr_liif'.*rdn_liif"):
        create_model('edsr_liif')


def test_create_model_with_weights(reference_ckpt_path):
    shipped = create_model('edsr_baseline_liif.standin_long')
    assert not shipped.training
    first = create_model('edsr_baseline_liif', pretrained='standin')  # the weights it continued
    assert not torch.equal(first.imnet.linears[0].weight, shipped.imnet.linears[0].weight)
    # The tag as an argument, and in its old spelling, names the same weights.
    for same in (create_model('edsr_baseline_liif', pretrained='standin_long'),
                 create_model('edsr_baseline_liif', pretrained='standin-long')):
        assert torch.equal(same.imnet.linears[0].weight, shipped.imnet.linears[0].weight)
    assert list_models(pretrained=True) == [
        'edsr_baseline_liif.div2k', 'edsr_baseline_liif.standin', 'edsr_baseline_liif.standin_long',
        'rdn_liif.div2k']
    with pytest.raises(ValueError, match='already names its weights'):
        create_model('edsr_baseline_liif.standin', pretrained='standin_long')
    official = create_model('edsr_baseline_liif', pretrained=reference_ckpt_path)
    assert torch.equal(official.imnet.linears[0].weight,
                       load_model(reference_ckpt_path).imnet.linears[0].weight)
    with pytest.raises(ValueError, match="no weights 'paper' for edsr_baseline_liif; known: edsr_baseline_liif.div2k, "):
        create_model('edsr_baseline_liif', pretrained='paper')
    with pytest.raises(CheckpointError, match='not edsr_baseline_metasr'):
        create_model('edsr_baseline_metasr', pretrained=reference_ckpt_path)
