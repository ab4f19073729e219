"""Start a LIIF as bilinear interpolation, so that training begins from a working upsampler.

With the local ensemble, LIIF predicts ``sum_t S_t / S * f(z_t, x_q - v_t, cell)`` and the area
weights ``S_t / S`` are exactly the bilinear weights of the four codes around the query. So if
the decoder returns the colour of its code's own pixel, LIIF *is* bilinear interpolation (and,
without the ensemble, nearest-neighbour). ``bilinear_init`` sets the weights of a freshly built
model so that this holds:

* encoder (EDSR): the head convolution copies the RGB input into feature channels 0-2 (its
  centre tap), and the body's last convolution starts at zero, so the long skip passes the head
  through and the residual blocks start by adding nothing, as zero-initialised residual branches
  do;
* decoder (MLP): hidden units 0-2 of every layer carry the centre code's channels 0-2 shifted
  by +1, so that the ReLUs pass them unchanged (normalised colours lie in [-1, 1]); the output
  layer reads only those units and takes the shift off.

The same rule, "the decoder returns its code's own colour", starts a MetaSR as nearest-neighbour
interpolation: its meta-MLP's output layer starts at zero weights and a bias that picks the centre
code's channels 0-2, so every query's predicted linear map copies that colour. The ablation
chapter trains every variant from this one rule, so that the starts differ only by what the
ablated part does with it.

Everything else keeps PyTorch's random initialisation, except the output weights of the random
units, which start at zero so that they do not disturb the start. Every parameter stays
trainable and the state-dict layout is the official one, so a model trained from this start is
an ordinary EDSR-baseline-LIIF checkpoint. The official recipe starts from random weights
instead; on a CPU budget of a few thousand steps that start stays below bicubic (the training
chapter shows both runs).

Book: chapter 8, "Training", and chapter 10, "Ablations".
"""
from __future__ import annotations

import torch
from torch import nn

from .encoders import EDSR
from .liif import LIIF
from .metasr import MetaSR

# Added to the carried colours so that they stay positive through the ReLUs.
SHIFT = 1.0


@torch.no_grad()
def bilinear_init(model: LIIF | MetaSR) -> LIIF | MetaSR:
    """Set ``model``'s weights (in place) so that it computes bilinear interpolation of its
    input (nearest-neighbour without the local ensemble, or for a MetaSR); returns the model.

    Needs an EDSR encoder with ``no_upsampling``; for a LIIF, an MLP decoder with at least 3
    units in every hidden layer (any unfolding and cell setting).
    """
    encoder, mlp = model.encoder, model.imnet
    if not isinstance(encoder, EDSR) or not encoder.no_upsampling or mlp is None:
        raise ValueError('bilinear_init needs a LIIF or MetaSR with an EDSR encoder '
                         '(no_upsampling) and an MLP decoder')
    head, body_out = encoder.head[0], encoder.body[-1]
    head.weight[:3].zero_()
    head.bias[:3].zero_()
    for c in range(3):
        head.weight[c, c, 1, 1] = 1.0  # channel c of the features = colour c of the input
    body_out.weight.zero_()
    body_out.bias.zero_()
    linears = mlp.linears
    if isinstance(model, MetaSR):
        # The meta-MLP's output is a (9C x 3) matrix, row-major; unfolded channel c sits at
        # 9c..9c+8 with its centre at 9c + 4, so entry (9c + 4, c) copies colour c.
        linears[-1].weight.zero_()
        linears[-1].bias.zero_()
        for c in range(3):
            linears[-1].bias[(9 * c + 4) * 3 + c] = 1.0
        return model

    if linears[-1].out_features != 3 or min(l.out_features for l in linears[:-1]) < 3:
        raise ValueError('bilinear_init needs an MLP with 3 outputs and at least 3 units in '
                         'every hidden layer')
    # Where the decoder input holds the query's own code, channel c: with unfolding, channel c
    # occupies inputs 9c..9c+8 and its centre is 9c + 4.
    centre = [9 * c + 4 if model.feat_unfold else c for c in range(3)]
    first = linears[0]
    first.weight[:3].zero_()
    for c in range(3):
        first.weight[c, centre[c]] = 1.0
    first.bias[:3] = SHIFT
    for layer in linears[1:-1]:
        layer.weight[:3].zero_()
        layer.weight[:3, :3] = torch.eye(3)
        layer.bias[:3].zero_()
    last = linears[-1]
    last.weight.zero_()
    last.weight[:, :3] = torch.eye(3)
    last.bias.fill_(-SHIFT)
    return model


INITS = {'bilinear': bilinear_init}


def apply_init(model: nn.Module, name: str | None) -> nn.Module:
    """The initialisation a training config names: ``init: bilinear``, or the weights of a
    checkpoint (a file, or the name of shipped or official weights) whose architecture is the
    model's, to train on from there; None keeps PyTorch's random initialisation."""
    if name is None:
        return model
    if name in INITS:
        return INITS[name](model)
    # Imported here: the shipped-weights catalogue pulls in the data package.
    from .checkpoint import CheckpointError, check_state_dict, load_model
    from .pretrained import resolve_weights
    try:
        path = resolve_weights(name)
        state = load_model(path).state_dict()
        check_state_dict(model, state, f'init {name!r}')
    except CheckpointError as e:
        raise ValueError(f'unknown init {name!r}: neither one of {", ".join(INITS)} nor usable '
                         f'weights: {e}') from None
    model.load_state_dict(state)
    return model
