"""The chapter's transposed-convolution facts (d2l, sec_transposed_conv)."""
import numpy as onp
import pytest
from mxnet import init, np
from mxnet.gluon import nn

from gluon_fcn.d2l import (conv_output_size, corr2d, kernel2matrix,
                              trans_conv, trans_conv_output_size,
                              upsampling_params)

pytestmark = pytest.mark.numerical  # again under lower ISAs


def test_chapter_convolution_values():
    X = np.arange(1, 17).reshape(1, 1, 4, 4).astype('float32')
    K = np.arange(1, 10).reshape(1, 1, 3, 3).astype('float32')
    conv = nn.Conv2D(1, kernel_size=3)
    conv.initialize(init.Constant(K))
    expected = [[348, 393], [528, 573]]
    assert conv(X)[0, 0].asnumpy().tolist() == expected
    W = kernel2matrix(K[0, 0], in_shape=(4, 4))
    assert W.shape == (4, 16)
    assert np.dot(W, X.reshape(-1)).reshape(2, 2).asnumpy().tolist() == \
        expected


def test_d2l_trans_conv_and_kernel2matrix():
    X = np.array([[0.0, 1.0], [2.0, 3.0]])
    K = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert trans_conv(X, K).asnumpy().tolist() == \
        [[0, 0, 1], [0, 4, 6], [4, 12, 9]]
    X = np.arange(9.0).reshape(3, 3)
    K = np.array([[1.0, 2.0], [3.0, 4.0]])
    Y = corr2d(X, K)
    assert Y.asnumpy().tolist() == [[27, 37], [57, 67]]
    W = kernel2matrix(K)
    assert W.asnumpy().tolist()[0] == [1, 2, 0, 3, 4, 0, 0, 0, 0]
    assert (np.dot(W, X.reshape(-1)).reshape(2, 2) == Y).all()
    Z = trans_conv(Y, K)
    assert (np.dot(W.T, Y.reshape(-1)).reshape(3, 3) == Z).all()


@pytest.mark.parametrize('stride,padding', [(1, 0), (2, 1), (3, 2)])
def test_matrix_equals_gluon_conv_and_transposed_conv(stride, padding):
    rng = onp.random.default_rng(stride)
    K = rng.normal(size=(3, 3)).astype('float32')
    x = rng.normal(size=(7, 8)).astype('float32')
    W = kernel2matrix(np.array(K), (7, 8), stride, padding)
    conv = nn.Conv2D(1, 3, strides=stride, padding=padding, use_bias=False)
    conv.initialize(init.Constant(np.array(K).reshape(1, 1, 3, 3)))
    y = conv(np.array(x).reshape(1, 1, 7, 8))
    onp.testing.assert_allclose(
        np.dot(W, np.array(x).reshape(-1)).asnumpy(),
        y.asnumpy().ravel(), rtol=1e-5, atol=1e-5)
    tconv = nn.Conv2DTranspose(1, 3, strides=stride, padding=padding,
                               use_bias=False)
    tconv.initialize(init.Constant(np.array(K).reshape(1, 1, 3, 3)))
    out_h, out_w = y.shape[2:]
    # Gluon's transposed conv of y has the input's size up to output_padding
    z = tconv(y)[0, 0, :7, :8]
    full = np.dot(W.T, y.reshape(-1)).reshape(7, 8)
    onp.testing.assert_allclose(full[:z.shape[0], :z.shape[1]].asnumpy(),
                                z.asnumpy(), rtol=1e-5, atol=1e-5)


def test_chapter_shapes():
    X = np.random.uniform(size=(1, 3, 64, 64))
    conv = nn.Conv2D(10, kernel_size=4, padding=1, strides=2)
    tconv = nn.Conv2DTranspose(3, kernel_size=4, padding=1, strides=2)
    conv.initialize()
    tconv.initialize()
    assert conv(X).shape == (1, 10, 32, 32)
    assert tconv(conv(X)).shape == (1, 3, 64, 64)
    X = np.random.uniform(size=(1, 10, 16, 16))
    conv = nn.Conv2D(20, kernel_size=5, padding=2, strides=3)
    tconv = nn.Conv2DTranspose(10, kernel_size=5, padding=2, strides=3)
    conv.initialize()
    tconv.initialize()
    assert tconv(conv(X)).shape == X.shape


def test_output_size_formulas_match_gluon():
    for n, k, p, s in [(320, 7, 3, 2), (16, 5, 2, 3), (10, 64, 16, 32)]:
        X = np.zeros((1, 1, n, n))
        conv = nn.Conv2D(1, k, strides=s, padding=p)
        tconv = nn.Conv2DTranspose(1, k, strides=s, padding=p)
        conv.initialize()
        tconv.initialize()
        if n + 2 * p >= k:
            assert conv(X).shape[-1] == conv_output_size(n, k, p, s)
        assert tconv(X).shape[-1] == trans_conv_output_size(n, k, p, s)
    assert trans_conv_output_size(10, 64, 16, 32) == 320
    assert trans_conv_output_size(15, 64, 16, 32) == 480


def test_upsampling_params():
    assert upsampling_params(32) == (64, 32, 16)
    assert upsampling_params(2) == (4, 2, 1)
    for s in range(1, 40):
        k, stride, p = upsampling_params(s)
        assert trans_conv_output_size(7, k, p, stride) == 7 * s
    with pytest.raises(ValueError):
        upsampling_params(0)
