"""Transposed convolution, the first half of d2l's FCN material.

Convolution is a matrix product: for a kernel `K` and an input of size
(h, w), `kernel2matrix` builds the matrix `W` with `W @ x.ravel()` equal to
the convolution of `x`; the transposed convolution is then `W.T`
(:numref:`sec_transposed_conv`). Arrays are `mxnet.numpy` arrays, as in
the book's 2nd edition.
"""
import numpy as onp
from mxnet import np


def corr2d(X, K):
    """Compute 2D cross-correlation.

    Defined in :numref:`sec_conv_layer`"""
    h, w = K.shape
    Y = np.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i: i + h, j: j + w] * K).sum()
    return Y


def trans_conv(X, K):
    """Basic 2D transposed convolution.

    Defined in :numref:`sec_transposed_conv`"""
    h, w = K.shape
    Y = np.zeros((X.shape[0] + h - 1, X.shape[1] + w - 1))
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            Y[i: i + h, j: j + w] += X[i, j] * K
    return Y


def conv_output_size(n, kernel_size, padding=0, stride=1):
    """Output length of a convolution; `padding` is per side, as in Gluon.

    floor((n + 2p - k) / s) + 1, e.g. 320 -> 10 through ResNet's 1/32.
    """
    return (n + 2 * padding - kernel_size) // stride + 1


def trans_conv_output_size(n, kernel_size, padding=0, stride=1):
    """Output length of a transposed convolution: (n - 1) s - 2p + k."""
    return (n - 1) * stride - 2 * padding + kernel_size


def upsampling_params(factor):
    """(kernel_size, stride, padding) of a transposed conv that scales by
    `factor` exactly: d2l's k = 2s, p = s/2 for even s, e.g. 32 -> (64, 32,
    16); for odd s, k = 2s - 1, p = (s - 1)/2. Either way k - 2p = s.
    """
    if factor < 1 or int(factor) != factor:
        raise ValueError(f'upsampling factor must be a positive integer, '
                         f'not {factor}')
    odd = factor % 2
    return 2 * factor - odd, factor, (factor - odd) // 2


def kernel2matrix(K, in_shape=(3, 3), stride=1, padding=0):
    """The matrix `W` of the 2D convolution (cross-correlation) with `K`.

    Parameters
    ----------
    K : (kh, kw) array
    in_shape : (h, w) of the input; d2l's default is (3, 3).
    stride, padding : int, as in Gluon's `Conv2D` (padding per side).

    Returns
    -------
    (out_h * out_w, h * w) array: `W @ X.reshape(-1)` is the convolution of
    `X`, and `W.T @ Y.reshape(-1)` its transposed convolution. Padded
    positions contribute nothing, so their columns are dropped.
    """
    K = onp.asarray(K.asnumpy() if hasattr(K, 'asnumpy') else K)
    kh, kw = K.shape
    h, w = in_shape
    out_h = conv_output_size(h, kh, padding, stride)
    out_w = conv_output_size(w, kw, padding, stride)
    W = onp.zeros((out_h * out_w, h * w), dtype='float32')
    for oi in range(out_h):
        for oj in range(out_w):
            for ki in range(kh):
                for kj in range(kw):
                    i = oi * stride - padding + ki
                    j = oj * stride - padding + kj
                    if 0 <= i < h and 0 <= j < w:
                        W[oi * out_w + oj, i * w + j] = K[ki, kj]
    return np.array(W)
