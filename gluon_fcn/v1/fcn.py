"""The code of d2l-zh v1 section 9.10 "Fully Convolutional Networks (FCN)".

`bilinear_kernel`, `predict` and `label2image` are written in the
chapter itself, not in d2lzh 1.0.0; `corr2d` is d2lzh's. In the chapter
`predict` reads the notebook's globals `net`, `ctx` and `test_iter`; here
the net and devices are passed, or bound once with `bind_predict`, so
that ``predict(img)`` reads as in the book. Arrays are legacy ``mx.nd``
NDArrays.
"""
import mxnet as mx
import numpy as np
from mxnet import nd

from ..errors import FCNError
from .data import VOC_COLORMAP, normalize_image

# what predict(img) uses when it is given no net: set by bind_predict
_bound = {'net': None, 'ctx': None}


def corr2d(X, K):
    """2-D cross-correlation of `X` (H, W) with the kernel `K` (h, w).

    Defined in d2lzh 1.0.0 (d2l-zh v1 section 5.1): one output element
    at a time, as the book explains it.

    Returns
    -------
    NDArray
        (H - h + 1, W - w + 1) float32.
    """
    h, w = K.shape
    Y = nd.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i: i + h, j: j + w] * K).sum()
    return Y


def bilinear_kernel(in_channels, out_channels, kernel_size):
    """A transposed-convolution weight that upsamples each channel
    bilinearly.

    From d2l-zh v1 section 9.10 (not in d2lzh 1.0.0). Channel i maps to
    channel i only, so the two counts should be equal. With stride s,
    ``kernel_size=2 * s`` and ``padding=s / 2`` the transposed
    convolution enlarges the height and width by s.

    Returns
    -------
    NDArray
        (in_channels, out_channels, kernel_size, kernel_size) float32.
    """
    factor = (kernel_size + 1) // 2
    if kernel_size % 2 == 1:
        center = factor - 1
    else:
        center = factor - 0.5
    og = np.ogrid[:kernel_size, :kernel_size]
    filt = ((1 - abs(og[0] - center) / factor) *
            (1 - abs(og[1] - center) / factor))  # (k, k), separable
    weight = np.zeros((in_channels, out_channels, kernel_size, kernel_size),
                      dtype='float32')
    weight[range(in_channels), range(out_channels), :, :] = filt
    return nd.array(weight)


def bind_predict(net, ctx):
    """Bind the `net` and devices that ``predict(img)`` uses.

    The chapter's `predict` reads the notebook's globals `net` and `ctx`;
    call this once after training, as the notebook does, instead.

    Parameters
    ----------
    net : Block
        The trained FCN.
    ctx : Context or list of Context
        The image goes to the first, as in the chapter (``ctx[0]``).
    """
    _bound['net'], _bound['ctx'] = net, ctx


def predict(img, net=None, ctx=None):
    """Class indices of every pixel of an image.

    From d2l-zh v1 section 9.10 (not in d2lzh 1.0.0). The image is
    normalised as `VOCSegDataset` normalises its images, run through the
    net and the arg max taken over the class channel. The height and
    width must be multiples of 32 for the FCN's output to match them.

    Parameters
    ----------
    img : NDArray
        (H, W, 3) uint8 RGB image.
    net : Block, optional
        Default: the one bound by `bind_predict`.
    ctx : Context or list of Context, optional
        Default: the one bound by `bind_predict`, else the CPU.

    Returns
    -------
    NDArray
        (H, W) float32 class indices, on the (first) device of `ctx`.
    """
    net = _bound['net'] if net is None else net
    ctx = _bound['ctx'] if ctx is None else ctx
    if net is None:
        raise FCNError('predict: no net; call bind_predict(net, ctx) first '
                       'or pass net=')
    if ctx is None:
        ctx = mx.cpu()
    if not isinstance(ctx, mx.Context):
        ctx = ctx[0]
    X = normalize_image(img)
    X = X.transpose((2, 0, 1)).expand_dims(axis=0)  # (1, 3, H, W)
    pred = nd.argmax(net(X.as_in_context(ctx)), axis=1)  # (1, H, W)
    return pred.reshape((pred.shape[1], pred.shape[2]))


def label2image(pred):
    """Colour class indices with the VOC palette.

    From d2l-zh v1 section 9.10 (not in d2lzh 1.0.0), where the palette
    goes to the chapter's ``ctx[0]``; here it goes to `pred`'s device,
    which is the same there.

    Parameters
    ----------
    pred : NDArray
        (H, W) class indices in [0, 21).

    Returns
    -------
    NDArray
        (H, W, 3) uint8 RGB image.
    """
    colormap = nd.array(VOC_COLORMAP, ctx=pred.context, dtype='uint8')
    X = pred.astype('int32')
    return colormap[X, :]
