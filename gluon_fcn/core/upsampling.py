"""Upsampling in MXNet, and Keras's 'SAME' / 'VALID' padding for Gluon.

The four ways of the PyTorch-blog material to enlarge a feature map:
`nearest` neighbour, `bilinear` interpolation, `max_unpool` (after
`max_pool_with_indices`) and a transposed convolution with a bilinear
kernel (`bilinear_transposed_conv`, d2l's initialisation, :numref:`sec_fcn`).

The Keras material names padding 'SAME' (output ceil(n / s)) or 'VALID'
(no padding). Gluon takes a number of zeros per side instead:
`conv_padding` and `conv_transpose_padding` translate, and the
`tf_*_output_size` functions give TensorFlow's sizes. TensorFlow pads
SAME asymmetrically when the total is odd (the extra zero at the bottom
and right); Gluon pads both sides alike. Where one symmetric padding
gives TensorFlow's size, the translators return it, and the map is then
shifted by one pixel against TensorFlow's (harmless for a network trained
from scratch, as here). Where none does (stride 1 with an even kernel),
they raise `FCNError`; `pad_same` pads the input TensorFlow's way for a
`Conv2D(padding=0)`, which then matches TensorFlow exactly.

Functions taking arrays accept NumPy arrays, legacy NDArrays and
`mxnet.numpy` arrays, and return the flavour of MXNet's mode at call time.
"""
import math

import numpy as onp
from mxnet import nd

from ..d2l import bilinear_kernel
from ..d2l.primer import conv_output_size, upsampling_params
from ..errors import FCNError
from .arrays import legacy, to_mode

PADDINGS = ('SAME', 'VALID')


def positive_int(value, what='upsampling factor'):
    if value < 1 or int(value) != value:
        raise FCNError(f'{what} must be a positive integer, not {value}')
    return int(value)


def nearest(X, factor):
    """Nearest-neighbour upsampling: each pixel of the (B, C, H, W) `X`
    becomes a (factor x factor) block (blog material, 'Nearest Neighbor').
    """
    factor = positive_int(factor)
    Y = nd.UpSampling(legacy(X), scale=factor, sample_type='nearest')
    return to_mode(Y)  # (B, C, H factor, W factor)


def bilinear(X, factor=None, size=None, align_corners=False):
    """Bilinear interpolation of the (B, C, H, W) `X` (blog material).

    Parameters
    ----------
    factor : number, or None to give `size`; the output is
        (floor(H factor), floor(W factor)).
    size : (height, width) of the output, or None to give `factor`.
    align_corners : bool
        False: pixels are unit squares and the output samples the input at
        (i + 0.5) / scale - 0.5, clamped at the borders; the convention of
        torch.nn.functional.interpolate and cv2.resize. True: the corner
        pixels of input and output coincide (MXNet's own default).
    """
    X = legacy(X)
    if (factor is None) == (size is None):
        raise FCNError('bilinear: give exactly one of factor and size')
    if size is None:
        size = (math.floor(X.shape[2] * factor),
                math.floor(X.shape[3] * factor))
    Y = nd.contrib.BilinearResize2D(X, height=size[0], width=size[1],
                                    align_corners=align_corners)
    return to_mode(Y)


def max_pool_with_indices(X, kernel_size=2):
    """Max pooling over non-overlapping (k x k) windows, with where each
    maximum was (blog material, 'Max Unpooling').

    Returns
    -------
    pooled, indices : (B, C, H // k, W // k) arrays. `indices` (int64) is
        the position of each maximum in its flattened (H, W) plane, the
        convention of torch.nn.functional.max_pool2d(return_indices=True).
        Rows and columns past a multiple of k are dropped, as by `Pooling`;
        a tie goes to the first maximum in row-major order.
    """
    X, k = legacy(X), positive_int(kernel_size, 'pooling window')
    B, C, H, W = X.shape
    h, w = H // k, W // k
    if h == 0 or w == 0:
        raise FCNError(f'max pooling: a {H}x{W} input is smaller than its '
                       f'{k}x{k} window')
    windows = X[:, :, :h * k, :w * k].reshape((B, C, h, k, w, k))
    windows = windows.transpose((0, 1, 2, 4, 3, 5)).reshape(
        (B, C, h, w, k * k))  # one window per output pixel
    pooled = windows.max(axis=-1)
    # float64 keeps positions exact in planes far beyond 2 ** 24 pixels
    local = windows.argmax(axis=-1).astype('float64')
    row = nd.floor(local / k)
    i = nd.arange(h, dtype='float64').reshape((1, 1, h, 1))
    j = nd.arange(w, dtype='float64').reshape((1, 1, 1, w))
    indices = ((i * k + row) * W + j * k + local - row * k)
    return to_mode(pooled), to_mode(
        indices.astype('int64'))


def max_unpool(Y, indices, kernel_size=2, output_size=None):
    """Max unpooling: each value of `Y` goes back where `indices` says its
    maximum came from, zeros everywhere else (blog material).

    Parameters
    ----------
    Y, indices : (B, C, h, w) arrays from `max_pool_with_indices` with the
        same `kernel_size`.
    output_size : (H, W) of the pooled input, default (h k, w k); rows and
        columns that pooling dropped come back as zeros.
    """
    Y, k = legacy(Y), positive_int(kernel_size, 'pooling window')
    B, C, h, w = Y.shape
    H, W = output_size or (h * k, w * k)
    if (H // k, W // k) != (h, w):
        raise FCNError(f'max unpooling: output size {(H, W)} does not pool '
                       f'to {(h, w)} with a {k}x{k} window')
    position = legacy(indices).astype('float64')
    row = nd.floor(position / W)
    i = nd.arange(h, dtype='float64').reshape((1, 1, h, 1))
    j = nd.arange(w, dtype='float64').reshape((1, 1, 1, w))
    local = (row - i * k) * k + position - row * W - j * k
    if local.min().asscalar() < 0 or local.max().asscalar() >= k * k:
        raise FCNError(f'max unpooling: an index lies outside its {k}x{k} '
                       'window; pool and unpool with the same kernel_size')
    spread = nd.one_hot(local.astype('float32'), k * k, dtype=Y.dtype)
    spread = spread * Y.expand_dims(-1)  # (B, C, h, w, k k)
    out = spread.reshape((B, C, h, w, k, k)).transpose(
        (0, 1, 2, 4, 3, 5)).reshape((B, C, h * k, w * k))
    if (H, W) != (h * k, w * k):
        out = nd.pad(out, mode='constant', pad_width=(
            0, 0, 0, 0, 0, H - h * k, 0, W - w * k))
    return to_mode(out)


def bilinear_filter(kernel_size):
    """The (k, k) float32 NumPy bilinear filter that d2l's
    `bilinear_kernel` puts on each channel (:numref:`sec_fcn`): the outer
    product of the tent 1 - |i - (k - 1) / 2| / ceil(k / 2)."""
    return bilinear_kernel(1, 1, kernel_size).asnumpy()[0, 0]


def bilinear_transposed_conv(X, factor):
    """Upsample the (B, C, H, W) `X` by `factor` with a transposed
    convolution whose kernel is `bilinear_filter`, channel by channel
    (d2l, :numref:`sec_fcn`; (kernel, stride, padding) from
    `upsampling_params`).

    Inside, it equals `bilinear(X, factor)`; on a border of factor // 2
    pixels it is darker, since the convolution sees zeros beyond the
    input where interpolation repeats the edge.
    """
    X = legacy(X)
    k, s, p = upsampling_params(positive_int(factor))
    channels = X.shape[1]
    # one filter per channel (num_group = C), not d2l's (C, C) diagonal
    weight = nd.array(onp.broadcast_to(bilinear_filter(k),
                                       (channels, 1, k, k)), dtype=X.dtype)
    Y = nd.Deconvolution(X, weight, kernel=(k, k), stride=(s, s),
                         pad=(p, p), num_filter=channels,
                         num_group=channels, no_bias=True)
    return to_mode(Y)  # (B, C, H factor, W factor)


def check_padding(padding):
    if str(padding).upper() not in PADDINGS:
        raise FCNError(f"padding must be 'SAME' or 'VALID', not {padding!r}")
    return str(padding).upper()


def tf_conv_output_size(n, kernel_size, stride=1, padding='SAME'):
    """TensorFlow's convolution output length: SAME ceil(n / s), VALID
    ceil((n - k + 1) / s) (Keras material, 'Conv2D')."""
    if check_padding(padding) == 'SAME':
        return -(-n // stride)
    if n < kernel_size:
        raise FCNError(f'VALID convolution: a {kernel_size} kernel does not '
                       f'fit in length {n}')
    return -(-(n - kernel_size + 1) // stride)


def tf_conv_transpose_output_size(n, kernel_size, stride=1, padding='SAME'):
    """Keras's transposed-convolution output length: SAME n s, VALID
    n s + max(k - s, 0), which is (n - 1) s + k for k >= s."""
    if check_padding(padding) == 'SAME':
        return n * stride
    return n * stride + max(kernel_size - stride, 0)


def tf_same_pads(n, kernel_size, stride=1):
    """(before, after): the zeros TensorFlow adds to a length `n` for
    SAME, max((ceil(n / s) - 1) s + k - n, 0) in all, the odd one after."""
    out = tf_conv_output_size(n, kernel_size, stride, 'SAME')
    total = max((out - 1) * stride + kernel_size - n, 0)
    return total // 2, total - total // 2


def conv_padding(kernel_size, stride=1, padding='SAME', n=None):
    """Gluon `Conv2D` padding (per side) giving TensorFlow's output size.

    VALID is 0. SAME with an odd kernel is (k - 1) / 2 whatever the input
    length. SAME with an even kernel depends on the input length `n`:
    half of TensorFlow's total, rounded up; for stride 1 no symmetric
    padding fits, and `FCNError` says to use `pad_same` instead.
    """
    if check_padding(padding) == 'VALID':
        return 0
    if kernel_size % 2:
        return (kernel_size - 1) // 2
    if n is None:
        raise FCNError(f'SAME padding of an even kernel ({kernel_size}) '
                       'depends on the input size: pass n')
    p = -(-sum(tf_same_pads(n, kernel_size, stride)) // 2)
    if conv_output_size(n, kernel_size, p, stride) != tf_conv_output_size(
            n, kernel_size, stride):
        raise FCNError(f'SAME with kernel {kernel_size}, stride {stride} '
                       f'pads one side more: use pad_same and padding 0')
    return p


def conv_transpose_padding(kernel_size, stride=1, padding='SAME'):
    """Gluon `Conv2DTranspose` (padding, output_padding) giving Keras's
    output size, which for Gluon is (n - 1) s - 2 padding + k +
    output_padding. Gluon needs output_padding < stride, so SAME with
    stride 1 and an even kernel raises `FCNError`; there, pad 0 and crop
    the output instead."""
    excess = kernel_size - stride  # what padding 0 adds beyond n s
    if check_padding(padding) == 'VALID':
        return 0, max(-excess, 0)
    if excess < 0:
        return 0, -excess
    pad = -(-excess // 2)
    output_padding = 2 * pad - excess
    if output_padding >= stride:
        raise FCNError(f'SAME with kernel {kernel_size}, stride {stride} '
                       'needs an output_padding of 1: pad 0 and crop')
    return pad, output_padding


def pad_same(X, kernel_size, stride=1):
    """`X` (B, C, H, W) zero-padded as TensorFlow pads for SAME, the odd
    zero at the bottom and right: a `Conv2D(padding=0)` applied to it gives
    TensorFlow's SAME result exactly, for any kernel and stride."""
    X = legacy(X)
    top, bottom = tf_same_pads(X.shape[2], kernel_size, stride)
    left, right = tf_same_pads(X.shape[3], kernel_size, stride)
    Y = nd.pad(X, mode='constant',
               pad_width=(0, 0, 0, 0, top, bottom, left, right))
    return to_mode(Y)
