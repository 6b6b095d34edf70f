"""Fast CPU paths for the chapter's net: native operators (`csrc/`), the
quadrant split of the transposed convolutions, the fused loss, oneDNN
fusion for inference (same parameters, same numbers), bf16 / int8
inference (`precision`: the same classes for >= 99% of the pixels) on
the units this CPU has (`cpu`), the fastest of them measured (`auto`),
bf16 mixed-precision training (`mixed`), and `train_fcn`, which trains
with all of them, for lessons and experiments.
"""
from .auto import Choice
from .cpu import precision_units
from .inference import optimize_for_inference
from .loss import (FusedPixelSoftmaxCELoss, fused_pixel_nll,
                   make_fused_loss)
from .mixed import use_bf16_convolutions
from .precision import (PRECISIONS, InferenceFCN, PrecisionNote,
                        layer_precisions)
from .train import train_fcn
from .upsample import accelerate
