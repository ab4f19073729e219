"""bilinear_init: a freshly built LIIF that computes bilinear interpolation (and a LIIF without
ensemble, or a MetaSR, that computes nearest-neighbour)."""
import pytest
import torch
import torch.nn.functional as F

from liif_core import make_cell, make_coord, make_model
from liif_core.init import apply_init, bilinear_init


def liif_spec(encoder='edsr-baseline', **liif_args):
    return {'name': 'liif', 'args': {
        'encoder_spec': {'name': encoder, 'args': {'no_upsampling': True}},
        'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3, 'hidden_list': [256] * 4}},
        **liif_args}}


def render(model, x, H, W, **query):
    coord = make_coord((H, W)).unsqueeze(0)
    with torch.no_grad():
        model.gen_feat(x)
        out = model.query_rgb(coord, make_cell(coord, (H, W)), **query)
    return out.view(1, H, W, 3).permute(0, 3, 1, 2)


@pytest.mark.parametrize('fast', [True, False])
@pytest.mark.parametrize('feat_unfold', [True, False])
def test_starts_as_bilinear_interpolation(fast, feat_unfold):
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = bilinear_init(make_model(liif_spec(feat_unfold=feat_unfold))).eval()
    x = torch.rand(1, 3, 20, 24) * 2 - 1  # normalised colours
    # (At exactly x1 every query lies on a tie between codes, where LIIF's epsilon shift picks
    # neighbours differently from bilinear weights; non-unit scales have no ties.)
    for H, W in ((50, 60), (37, 71), (15, 17)):
        want = F.interpolate(x, (H, W), mode='bilinear', align_corners=False)
        torch.testing.assert_close(render(model, x, H, W, fast=fast), want, rtol=0, atol=2e-5)


def test_without_ensemble_it_is_nearest_neighbour():
    torch.manual_seed(0)
    model = bilinear_init(make_model(liif_spec(local_ensemble=False))).eval()
    x = torch.rand(1, 3, 8, 10) * 2 - 1
    # x3 puts no query on a boundary between codes, so nearest is unambiguous
    want = F.interpolate(x, (24, 30), mode='nearest')
    torch.testing.assert_close(render(model, x, 24, 30), want, rtol=0, atol=2e-5)


def test_metasr_starts_as_nearest_neighbour():
    torch.manual_seed(0)
    model = bilinear_init(make_model({'name': 'metasr', 'args': {
        'encoder_spec': {'name': 'edsr-baseline', 'args': {'no_upsampling': True}}}})).eval()
    x = torch.rand(1, 3, 8, 10) * 2 - 1
    for H, W in ((24, 30), (17, 23)):
        want = F.interpolate(x, (H, W), mode='nearest')
        torch.testing.assert_close(render(model, x, H, W), want, rtol=0, atol=2e-5)


def test_every_parameter_still_learns():
    torch.manual_seed(0)
    model = bilinear_init(make_model(liif_spec()))
    x = torch.rand(2, 3, 12, 12) * 2 - 1
    coord = torch.rand(2, 100, 2) * 2 - 1
    cell = torch.full((2, 100, 2), 2 / 36)
    (model(x, coord, cell) - torch.rand(2, 100, 3)).abs().mean().backward()
    # zero-initialised layers receive gradients, so training can move them
    assert model.encoder.body[-1].weight.grad.abs().sum() > 0
    assert model.imnet.linears[-1].weight.grad[:, 3:].abs().sum() > 0


def test_refuses_what_it_cannot_initialise():
    with pytest.raises(ValueError, match='EDSR encoder'):
        bilinear_init(make_model(liif_spec(encoder='rdn')))
    with pytest.raises(ValueError, match='unknown init'):
        apply_init(make_model(liif_spec()), 'bicubic')
    model = make_model(liif_spec())
    assert apply_init(model, None) is model
