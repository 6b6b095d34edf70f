"""Fast CPU paths for the chapter's net: native operators (`csrc/`), the
quadrant split of the transposed convolutions, the fused loss, and
oneDNN fusion for inference. Same parameters, same numbers. `train_fcn`
trains with all of them, for lessons and experiments.
"""
from .inference import accelerate, optimize_for_inference
from .loss import FusedPixelSoftmaxCELoss, fused_pixel_nll, make_loss
from .train import train_fcn
