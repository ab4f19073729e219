"""ONNX export: the encoder and decoder graphs, run by onnxruntime, give what ``render`` gives.

The graphs are compared through ``render`` itself: an ``OnnxPredictor`` answers render's calls
(inp, coord, cell) with the two graphs, so both sides decode the very same queries, full images
and windows alike.
"""
import copy
import functools
import hashlib
import json

import onnx
import onnxruntime as ort
import pytest
import torch

from liif_core import LIIF, make_model, save_model
from liif_core.coords import make_coord
from liif_core.cli import main
from liif_core.export import GRAPHS, export_onnx
from liif_core.kernels import single_threaded
from liif_core.models import edsr_baseline_metasr
from liif_core.pretrained import DEFAULT_MODEL, resolve_model
from liif_core.render import PAPER_DATA_NORM, predict, render

# The bound of the issue: onnxruntime against PyTorch, in [0, 1].
BOUND = 1e-5
SMALL_EDSR = {'name': 'edsr-baseline', 'args': {'n_resblocks': 2, 'n_feats': 16,
                                                 'no_upsampling': True}}
SMALL_MLP = {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [32, 32]}}
# An 18 x 16 input (16: a power of 2, so that the tie test meets exact ties), and views of it
# by render's arguments. The two past-border windows reach beyond the image on the top-left and
# on the bottom-right (at x6 the image is 108 x 96).
LR_SIZE = (18, 16)
VIEWS = {
    'x1.5': dict(scale=1.5),
    'x4': dict(scale=4),
    'x7.3-window': dict(scale=7.3, window=(61.5, 50.25, 24, 32)),
    'x30-window': dict(scale=30, window=(301, 255.5, 24, 32)),
    'past-top-left': dict(scale=6, window=(-10.5, -17, 24, 32)),
    'past-bottom-right': dict(scale=6, window=(90, 75.5, 24, 32)),
    'cell-x30-at-x4': dict(scale=4, window=(20, 30, 24, 32), cell=(2 / 540, 2 / 480)),
}
NOISY_NORM = {'inp': {'sub': [0.45, 0.44, 0.40], 'div': [0.23, 0.25, 0.27]},
              'gt': {'sub': [0.45, 0.44, 0.40], 'div': [0.9, 1.1, 1.3]}}


@pytest.fixture(autouse=True)
def _one_thread():
    """torch on one thread, like onnxruntime here: on a busy 2-core machine two threads made
    each of the encoder's small convolutions 30 times slower."""
    torch.set_num_threads(1)


@functools.lru_cache(maxsize=None)
def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


class OnnxPredictor:
    """The exported graphs as a ``render`` predictor: (B, 3, h, w) in [0, 1], (B, Q, 2) twice
    -> (B, Q, 3) in [0, 1], one image at a time."""

    def __init__(self, folder, decoder='decoder'):
        self.encoder = session(folder / GRAPHS['encoder'])
        self.decoder = session(folder / GRAPHS[decoder])

    def table(self, image):
        return self.encoder.run(None, {'image': image[None].numpy()})[0]

    def __call__(self, inp, coord, cell):
        return torch.stack([torch.from_numpy(self.decoder.run(None, {
            'table': self.table(img), 'coord': q.contiguous().numpy(),
            'cell': c.contiguous().numpy()})[0]) for img, q, c in zip(inp, coord, cell)])


def lr_image(seed=1, size=LR_SIZE):
    return torch.rand(3, *size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope='module', params=['default', 'reference'])
def exported(request, tmp_path_factory, reference_ckpt_path):
    """(model, folder, export_onnx's answer) for the shipped default weights (by their name)
    and for a checkpoint file in the official layout."""
    weights, name = {'default': (DEFAULT_MODEL, DEFAULT_MODEL),
                     'reference': (reference_ckpt_path, 'edsr_liif_reference')}[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    with single_threaded():
        info = export_onnx(weights, folder)
    assert info['name'] == name
    return resolve_model(weights), folder, info


@pytest.mark.parametrize('view', VIEWS)
def test_graphs_match_render(exported, view):
    model, folder, _ = exported
    lr = lr_image()
    expected = render(model, lr, **VIEWS[view])
    got = render(OnnxPredictor(folder), lr, **VIEWS[view])
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= BOUND


def test_no_ensemble_decoder_matches_render_without_ensemble(exported):
    model, folder, _ = exported
    plain = copy.deepcopy(model)
    plain.local_ensemble = False
    lr = lr_image()
    for view in ('x7.3-window', 'past-top-left', 'cell-x30-at-x4'):
        expected = render(plain, lr, **VIEWS[view])
        got = render(OnnxPredictor(folder, 'decoder_no_ensemble'), lr, **VIEWS[view])
        assert (got - expected).abs().max() <= BOUND
        # The switch matters: the ensemble's blend is not the nearest code's value.
        assert (got - render(OnnxPredictor(folder), lr, **VIEWS[view])).abs().max() > 0.01


def test_ties_pick_the_library_codes(exported):
    """Queries on code centres and exactly on the edges between codes, where the ensemble's
    shifted queries (centres) and the nearest lookup (edges) tie: both decoders read the codes
    the library reads."""
    model, folder, _ = exported
    lr = lr_image()
    h, w = lr.shape[-2:]
    # Edges -1 + 2k/n and centres -1 + (2k+1)/n, from one step of 1/n along each axis.
    # Exact floats where n is a power of 2 (w = 32), so the lookup meets true ties there.
    rows = make_coord((2 * h + 1,), ranges=[(-1 - 1 / (2 * h), 1 + 1 / (2 * h))])
    cols = make_coord((2 * w + 1,), ranges=[(-1 - 1 / (2 * w), 1 + 1 / (2 * w))])
    coord = torch.stack(torch.meshgrid(rows[:, 0], cols[:, 0], indexing='ij'), -1).view(1, -1, 2)
    cell = torch.full_like(coord, 2 / 96)
    plain = copy.deepcopy(model)
    plain.local_ensemble = False
    for library, decoder in ((model, 'decoder'), (plain, 'decoder_no_ensemble')):
        expected = predict(library, lr[None], coord, cell)
        got = OnnxPredictor(folder, decoder)(lr[None], coord, cell)
        assert (got - expected).abs().max() <= BOUND


def test_table_is_the_projection_of_the_codes(exported):
    model, folder, info = exported
    lr = lr_image(size=(13, 17))  # another size than the other tests': h and w are dynamic
    with torch.no_grad():
        feat = model.encoder((lr[None] - 0.5) / 0.5)
        expected = model.project_codes(feat).view(13, 17, -1)
    table = torch.from_numpy(OnnxPredictor(folder).table(lr))
    assert table.shape == (13, 17, info['D'])
    assert (table - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_model_json_describes_the_files(exported):
    model, folder, info = exported
    on_disk = json.loads((folder / 'model.json').read_text())
    assert on_disk == {k: v for k, v in info.items() if k != 'paths'}
    assert on_disk['D'] == model.imnet.linears[0].out_features == 256
    assert on_disk['data_norm'] == PAPER_DATA_NORM
    assert on_disk['torch'] == torch.__version__
    for key, file in on_disk['files'].items():
        data = (folder / file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == on_disk['sha256'][file]
        onnx.checker.check_model(folder / file, full_check=True)
        assert [(o.domain, o.version) for o in onnx.load(folder / file).opset_import] == \
            [('', on_disk['opset'])]
        graph = session(folder / file)
        names = [i.name for i in graph.get_inputs()] + [o.name for o in graph.get_outputs()]
        assert names == (['image', 'table'] if key == 'encoder'
                         else ['table', 'coord', 'cell', 'rgb'])


def small_liif(**flags):
    torch.manual_seed(3)
    return LIIF(SMALL_EDSR, SMALL_MLP, **flags).eval()


def test_export_is_deterministic(tmp_path):
    model = small_liif()
    first = export_onnx(model, tmp_path / 'first')
    export_onnx(model, tmp_path / 'again')
    for file in [*GRAPHS.values(), 'model.json']:
        assert (tmp_path / 'again' / file).read_bytes() == (tmp_path / 'first' / file).read_bytes()
    assert len(set(first['sha256'].values())) == 3


def test_liif_export_command(tmp_path, capsys):
    """`liif export` writes the same files as the library, and takes the data_norm that a
    training save records."""
    save_model(small_liif(), tmp_path / 'epoch-last.pth', epoch=3, data_norm=NOISY_NORM)
    assert main(['export', str(tmp_path / 'cli'), '--weights', str(tmp_path / 'epoch-last.pth'),
                 '--no-progress']) == 0
    assert capsys.readouterr().out.split() == [
        str((tmp_path / 'cli' / f).resolve()) for f in [*GRAPHS.values(), 'model.json']]
    info = json.loads((tmp_path / 'cli' / 'model.json').read_text())
    assert info['name'] == 'epoch-last' and info['data_norm'] == NOISY_NORM
    export_onnx(tmp_path / 'epoch-last.pth', tmp_path / 'lib')
    for file in [*GRAPHS.values(), 'model.json']:
        assert (tmp_path / 'cli' / file).read_bytes() == (tmp_path / 'lib' / file).read_bytes()
    assert main(['export', str(tmp_path / 'x'), '--weights', str(tmp_path / 'none.pth')]) == 1
    assert 'liif export: error: ' in capsys.readouterr().err


def test_non_paper_data_norm(tmp_path):
    """A training save with per-channel normalisation: the graphs carry its data_norm."""
    save_model(small_liif(), tmp_path / 'epoch-last.pth', epoch=3)
    info = export_onnx(tmp_path / 'epoch-last.pth', tmp_path / 'onnx', data_norm=NOISY_NORM)
    assert info['name'] == 'epoch-last' and info['data_norm'] == NOISY_NORM
    model = small_liif()
    lr = lr_image()
    for view in ('x4', 'past-top-left'):
        expected = render(model, lr, **VIEWS[view], data_norm=NOISY_NORM)
        got = render(OnnxPredictor(tmp_path / 'onnx'), lr, **VIEWS[view])
        assert (got - expected).abs().max() <= BOUND
        # The paper's normalisation gives another image: the graphs do use NOISY_NORM.
        assert (got - render(model, lr, **VIEWS[view])).abs().max() > 0.01
        assert ((expected > 0) & (expected < 1)).float().mean() > 0.9  # not clamped flat


@pytest.mark.parametrize('flags', [dict(feat_unfold=False), dict(cell_decode=False),
                                   dict(local_ensemble=False)], ids=lambda f: str(*f))
def test_ablation_variants_export(flags, tmp_path):
    model = small_liif(**flags)
    info = export_onnx(model, tmp_path)
    assert {k: info[k] for k in flags} == flags
    lr = lr_image()
    for view in ('x7.3-window', 'past-bottom-right', 'cell-x30-at-x4'):
        expected = render(model, lr, **VIEWS[view])
        got = render(OnnxPredictor(tmp_path), lr, **VIEWS[view])
        assert (got - expected).abs().max() <= BOUND
    if not model.cell_decode:  # cell stays an input, and changes nothing
        predictor, coord = OnnxPredictor(tmp_path), make_coord((9, 11)).unsqueeze(0)
        assert torch.equal(predictor(lr[None], coord, torch.full_like(coord, 0.5)),
                           predictor(lr[None], coord, torch.full_like(coord, 0.01)))


@pytest.mark.parametrize('model, message', [
    (lambda: make_model({'name': 'liif', 'args': {'encoder_spec': SMALL_EDSR}}),
     'no decoder'),
    (edsr_baseline_metasr, 'only LIIF models export to ONNX, not MetaSR'),
])
def test_refuses_models_without_a_liif_decoder(model, message, tmp_path):
    with pytest.raises(ValueError, match=message) as error:
        export_onnx(model(), tmp_path)
    assert '\n' not in str(error.value)
    assert not any(tmp_path.iterdir())
