"""The chapter's loss as one native operator (`fcn_pixel_ce`,
`gluon_fcn.fast.native`): the softmax over the channels is read in place
and the backward pass writes softmax - onehot directly, several times
faster forward and backward than MXNet's operators (README, results log:
the loss row of "Speed against the d2l PyTorch port"); float32 on the
CPU, either MXNet mode.
"""
import mxnet as mx

from ..core.arrays import as_legacy, like
from ..core.training import PixelSoftmaxCELoss
from ..core.training import make_chapter_loss
from . import native


def fused_pixel_nll(pred, label, ignore_label=None):
    """Per example, the mean over its pixels (those not labelled
    `ignore_label`) of -log softmax(pred)[label]: (B, C, H, W), (B, H, W)
    -> (B,), in `pred`'s flavour.

    Labels outside [0, C) are clipped into it, as the chapter's loss
    (`pick`) clips them, those beyond int's range too (which `pick` casts
    with undefined behaviour). A NaN or infinite label is an error, an
    `MXNetError` when the loss is read: no class stands for it, and
    `pick` silently reads it as one. An example with no pixel left has
    loss 0. `ignore_label` is an integer (255.0 is taken as 255).
    """
    label = as_legacy(label)
    if label.dtype != 'float32':
        label = label.astype('float32')
    if ignore_label is None:
        ignore_label = -1  # the operator's 'none'
    elif isinstance(ignore_label, float) and ignore_label.is_integer():
        ignore_label = int(ignore_label)  # its attribute is an integer
    loss, _ = mx.nd.fcn_pixel_ce(as_legacy(pred), label,
                                 ignore_label=ignore_label)
    return like(loss, pred)


class FusedPixelSoftmaxCELoss(PixelSoftmaxCELoss):
    """`PixelSoftmaxCELoss` computed by the native operator where it can
    run (`native.usable`), else by MXNet's operators: the same values and
    gradients, except for NaN, infinite and beyond-int labels
    (`fused_pixel_nll`)."""

    def forward(self, pred, label):
        if native.usable(pred):
            return fused_pixel_nll(pred, label, self._ignore)
        return super().forward(pred, label)


def make_fused_loss(labels='d2l'):
    """The chapter's loss (`core.training.make_chapter_loss`), fused."""
    return make_chapter_loss(labels, FusedPixelSoftmaxCELoss)
