"""The fast decoding path gives the reference algorithm's numbers, in any schedule."""
import os

import pytest
import torch

import liif_core.kernels
from liif_core import LIIF, load_model, make_cell, make_coord
from liif_core.bench import DEFAULT_SPEC, fast_macs_per_query

SMALL_EDSR = {'name': 'edsr-baseline', 'args': {'n_resblocks': 2, 'n_feats': 16,
                                                 'no_upsampling': True}}
DEEP_MLP = {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [256, 256]}}
FLAGS = [dict(local_ensemble=e, feat_unfold=u, cell_decode=c)
         for e in (True, False) for u in (True, False) for c in (True, False)]


def flag_id(flags):
    return '-'.join(k for k, v in flags.items() if v) or 'none'


def grid_queries(B, H, W):
    coord = make_coord((H, W)).unsqueeze(0).expand(B, -1, -1).contiguous()  # (B, H*W, 2)
    return coord, make_cell(coord, (H, W))


def random_queries(B, Q, reach=1.5):
    """Coordinates uniform in [-reach, reach] (outside the image too), cells of varied sizes."""
    coord = (torch.rand(B, Q, 2) * 2 - 1) * reach
    return coord, torch.rand(B, Q, 2) * 0.5 + 0.01


def decode_both(model, inp, coord, cell):
    with torch.no_grad():
        model.gen_feat(inp)
        return model.query_rgb(coord, cell, fast=True), model.query_rgb(coord, cell, fast=False)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 97 queries, so every case crosses chunk boundaries, a partial one last."""
    monkeypatch.setattr(liif_core.kernels, 'FAST_CHUNK', 97)


@pytest.mark.parametrize('fused', [True, False], ids=['onednn', 'addmm'])
def test_reference_checkpoint(reference_ckpt_path, reference, small_chunks, monkeypatch, fused):
    """Both hidden-layer kernels: oneDNN's fused linear + ReLU (used on AVX-512 CPUs) and
    addmm + relu_ (elsewhere), each through reused buffers and a partial last chunk."""
    if fused and not hasattr(torch.ops.mkldnn, '_linear_pointwise'):
        pytest.skip('this build of torch has no oneDNN linear')
    monkeypatch.setattr(liif_core.kernels, 'FUSED_LINEAR', fused)
    model = load_model(reference_ckpt_path)
    for case in ('grid', 'rand'):
        fast, ref = decode_both(model, reference['inp'], reference[f'{case}_coord'],
                                reference[f'{case}_cell'])
        assert (fast - ref).abs().max() <= 1e-5
        assert (fast - reference[f'{case}_out']).abs().max() <= 1e-5


@pytest.mark.parametrize('flags', FLAGS, ids=flag_id)
def test_every_flag_combination(flags):
    model = LIIF(SMALL_EDSR, DEEP_MLP, **flags)
    inp = torch.randn(2, 3, 5, 7)  # batch of 2, non-square
    for coord, cell in (grid_queries(2, 15, 21),  # x3: shifted queries tie on cell edges
                        grid_queries(2, 11, 23),  # non-integer scales
                        random_queries(2, 3000)):  # |q| up to 1.5, more than one chunk
        fast, ref = decode_both(model, inp, coord, cell)
        assert fast.shape == ref.shape == (2, coord.shape[1], 3)
        assert (fast - ref).abs().max() <= 1e-5


@pytest.mark.parametrize('shape', [(1, 6), (6, 1), (1, 1)])
def test_one_pixel_wide_inputs(shape, small_chunks):
    model = LIIF(SMALL_EDSR, DEEP_MLP)
    inp = torch.randn(2, 3, *shape)
    for coord, cell in (grid_queries(2, 3 * shape[0], 3 * shape[1]), random_queries(2, 50)):
        fast, ref = decode_both(model, inp, coord, cell)
        assert (fast - ref).abs().max() <= 1e-5


def test_decode_with_precomputed_projection_equals_query_rgb():
    model = LIIF(SMALL_EDSR, DEEP_MLP)
    coord, cell = random_queries(2, 100)
    with torch.no_grad():
        feat = model.gen_feat(torch.randn(2, 3, 6, 4))
        expected = model.query_rgb(coord, cell)
        got = model.decode(feat, coord, cell, proj=model.project_codes(feat))
    assert torch.equal(got, expected)


@pytest.mark.parametrize('flags', [FLAGS[0], FLAGS[-1]], ids=flag_id)
def test_gradients_agree(flags, small_chunks):
    """Training may use either path: the parameter gradients are the same."""
    model = LIIF(SMALL_EDSR, DEEP_MLP, **flags)
    inp = torch.randn(2, 3, 6, 5)
    coord, cell = random_queries(2, 60, reach=1.1)
    target = torch.randn(2, 60, 3)
    grads = []
    for fast in (True, False):
        model.zero_grad()
        model.gen_feat(inp)
        (model.query_rgb(coord, cell, fast=fast) - target).abs().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    fast_grads, ref_grads = grads
    for name, ref in ref_grads.items():
        scale = ref.abs().max().clamp_min(1e-6)
        assert (fast_grads[name] - ref).abs().max() <= 1e-4 * scale, name


def test_fast_macs_per_query_counts_the_layers_after_the_first():
    model = liif_core.make_model(DEFAULT_SPEC)
    # Per member: three 256x256 layers, rel and cell (4) x 256, its blend weight x 256.
    per_member = 3 * 256 * 256 + 4 * 256 + 256
    # Per query: the 256x3 output layer on the blended activations.
    per_query = 256 * 3
    # The 3x3 convolution: 48*48 codes x 256 outputs x 64*9 inputs, over 192*192 queries.
    conv = 48 * 48 * 256 * 64 * 9 / (192 * 192)
    assert fast_macs_per_query(model, 48, 48, 192 * 192) == pytest.approx(
        4 * per_member + per_query + conv)


def test_worker_threads_give_the_same_numbers(monkeypatch):
    """Work units on worker threads: the reference's numbers, the same as on one thread, and
    torch's thread setting is restored afterwards."""
    monkeypatch.setattr(liif_core.kernels, 'WORK_UNIT', 300)
    model = LIIF(SMALL_EDSR, DEEP_MLP)
    inp = torch.randn(2, 3, 9, 8)
    coord, cell = random_queries(2, 2000)
    fast, ref = decode_both(model, inp, coord, cell)  # 2 threads: 8 units on 2 workers
    assert torch.get_num_threads() == 2
    assert (fast - ref).abs().max() <= 1e-5
    torch.set_num_threads(1)
    one, _ = decode_both(model, inp, coord, cell)
    assert (fast - one).abs().max() <= 1e-6


@pytest.mark.parametrize('queries', [1, 299, 300, 2000, 36864, 518400])
def test_work_units_share_the_queries_evenly_among_workers(queries):
    kernels = liif_core.kernels
    cpu = torch.device('cpu')
    with torch.no_grad():
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            units = kernels.work_units(queries, cpu)
            assert units[0] == 0 and units.step <= kernels.WORK_UNIT
            assert units[-1] < queries <= units[-1] + units.step
            if threads == 1:
                assert units.step == kernels.WORK_UNIT
            elif len(units) > 1:
                assert len(units) % threads == 0, (threads, len(units))
                # The last unit is the only short one, and by less than one query per unit.
                assert queries - units[-1] > units.step - len(units)
    torch.set_num_threads(2)
    # Training (gradients) and GPUs run units in order: full units.
    assert kernels.work_units(36864, cpu).step == kernels.WORK_UNIT
    assert kernels.work_units(36864, torch.device('cuda')).step == kernels.CUDA_CHUNK


def test_convolution_threads_use_the_idle_cores(monkeypatch):
    kernels = liif_core.kernels
    assert kernels.runnable_elsewhere() >= 0  # Linux: the reading thread is not counted
    cores = len(os.sched_getaffinity(0))
    for elsewhere, threads in [(None, 1), (0, min(2, cores)), (cores - 1, 1), (cores + 5, 1)]:
        monkeypatch.setattr(kernels, 'runnable_elsewhere', lambda: elsewhere)
        with kernels.convolution_threads():
            assert torch.get_num_threads() == threads, elsewhere
        assert torch.get_num_threads() == 2


def test_the_encoder_gives_the_same_numbers_on_any_number_of_threads():
    torch.manual_seed(0)
    model = LIIF(SMALL_EDSR, DEEP_MLP).eval()
    inp = torch.randn(1, 3, 40, 37)
    with torch.no_grad():
        torch.set_num_threads(1)
        one = model.gen_feat(inp)
        torch.set_num_threads(2)
        two = model.gen_feat(inp)
    assert (one - two).abs().max() <= 1e-6 * one.abs().max()


def test_chunks_follow_the_device():
    kernels = liif_core.kernels
    assert kernels.fast_chunks(torch.device('cpu')) == (kernels.WORK_UNIT, kernels.FAST_CHUNK)
    assert kernels.fast_chunks(torch.device('cuda')) == (kernels.CUDA_CHUNK,) * 2


def test_a_training_step_makes_no_tensor_from_python_values_on_the_device(monkeypatch):
    """On a GPU, ``torch.tensor(values, device=...)`` copies from the host and waits for the
    GPU's queue: neither the coordinates nor the fast path may make one."""
    made = []
    tensor = torch.tensor

    def watched(*args, **kwargs):
        if kwargs.get('device') is not None:
            made.append(kwargs['device'])
        return tensor(*args, **kwargs)

    model = LIIF(SMALL_EDSR, DEEP_MLP)
    inp = torch.randn(2, 3, 6, 5)
    monkeypatch.setattr(torch, 'tensor', watched)
    coord, cell = grid_queries(2, 12, 10)
    model(inp, coord, cell).abs().mean().backward()
    assert made == []
