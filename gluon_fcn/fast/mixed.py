"""Mixed-precision training in bfloat16 on the CPU: the convolutions of
the backbone in bf16, everything else in float32.

Each `nn.Conv2D` of the net becomes a `Bf16Conv2D` holding the same
Parameters: it casts its input, weight and bias to bfloat16 for the
convolution, and the gradients come back through the casts in float32.
So the Parameters (the master weights), the optimizer's states and
every checkpoint stay float32, and a run resumes and exports as a
float32 one. BatchNorm, ReLU, pooling and the residual sums run on the
bf16 activations (MXNet's AMP lists them as dtype-neutral:
`mxnet/contrib/amp/lists/symbol_bf16.py`), with float32 statistics. The
score convolutions (`core.model.score_layers`) return float32, so the
transposed convolutions, the skip sums and the loss run in float32.

This is AMP's bf16 recipe, written as layers rather than through
`amp.init`: `amp.init` rewrites MXNet's operators for the whole process
(everything after it, a float32 net too, computes in bf16), is lost when
the native operators load after it, and crashed in the chapter
upsampler's backward pass (`benchmarks/bf16_training_repro.py`).
"""
import warnings

import numpy as onp
from mxnet.gluon import nn

from ..core.arrays import as_legacy, like
from ..core.model import score_layers
from .cpu import bf16_training_slower, no_units, onednn, precision_units
from .precision import PrecisionNote
from .upsample import find_layers, replace_layers, same_layer_as

TRAINING_PRECISIONS = ('fp32', 'bf16')

# MXNet's name for bfloat16 (`mxnet.contrib.amp.bfloat16`; importing
# that module would load AMP's operator lists for no use)
BFLOAT16 = onp.dtype([('bfloat16', onp.uint16)])


class Bf16Conv2D(nn.Conv2D):
    """`nn.Conv2D` computed in bfloat16 on float32 Parameters; its output
    bfloat16, or float32 with `float32_out`."""

    def __init__(self, *args, float32_out=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.float32_out = float32_out

    def hybrid_forward(self, F, x, weight, bias=None):
        x, weight = cast(F, x, BFLOAT16), cast(F, weight, BFLOAT16)
        bias = None if bias is None else cast(F, bias, BFLOAT16)
        out = super().hybrid_forward(F, x, weight, bias)
        return cast(F, out, 'float32') if self.float32_out else out


def cast(F, x, dtype):
    """`x` (legacy or NumPy flavour) cast to `dtype` by AMP's cast, whose
    gradient comes back in `x`'s dtype (a no-op where `x` has `dtype`)."""
    return like(F.amp_cast(as_legacy(x), dtype=dtype), x)


def use_bf16_convolutions(net):
    """Compute every `nn.Conv2D` of `net` (from `build_fcn`) in bfloat16,
    in place (module docstring); call it before `hybridize`. Returns the
    number of convolutions replaced."""
    scores = {id(layer) for layer in score_layers(net)}
    found = find_layers(net, lambda b: type(b) is nn.Conv2D)
    replace_layers(found, lambda layer: same_layer_as(
        Bf16Conv2D, layer, float32_out=id(layer) in scores))
    return len(found)


def use_float32_convolutions(net):
    """Undo `use_bf16_convolutions`: plain `nn.Conv2D`s holding the same
    Parameters, for float32 passes after training. Returns the number
    replaced."""
    found = find_layers(net, lambda b: isinstance(b, Bf16Conv2D))
    replace_layers(found,
                   lambda layer: same_layer_as(nn.Conv2D, layer))
    return len(found)


def training_refusal(precision, devices):
    """Why this machine does not train in `precision` on `devices`, in one
    phrase, or None. Where bf16 runs but is known to be slower than
    float32 (`cpu.bf16_training_slower`: without AMX), a `PrecisionNote`
    says so and it runs as asked."""
    if precision not in TRAINING_PRECISIONS:
        return (f'unknown training precision {precision!r}; choose from '
                f'{", ".join(TRAINING_PRECISIONS)}')
    if precision == 'fp32':
        return None
    gpus = [str(d) for d in devices if d.device_type != 'cpu']
    if gpus:
        return f'bf16 training runs on the CPU only, not {gpus[0]}'
    if not onednn():
        return 'this MXNet has no oneDNN (MKLDNN)'
    if not precision_units('bf16'):
        return no_units('bf16')
    slower = bf16_training_slower()
    if slower:
        warnings.warn(f'{slower}; training in bf16 as asked', PrecisionNote,
                      stacklevel=3)  # the line that asked for bf16
    return None
