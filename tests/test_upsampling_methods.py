"""Upsampling methods and the SAME / VALID padding vocabulary for Gluon."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet.gluon import nn

from gluon_fcn.core import upsampling as U
from gluon_fcn.errors import FCNError

pytestmark = pytest.mark.numerical  # again under lower ISAs


def random_maps(*shape, seed=0):
    return onp.random.RandomState(seed).rand(*shape).astype('float32')


def gluon_conv(n, k, s, padding, channels=1):
    """Output length of a real Gluon Conv2D on an (n, n) input."""
    layer = nn.Conv2D(channels, k, strides=s, padding=padding)
    layer.initialize()
    return layer(mx.np.ones((1, 1, n, n))).shape[2]


def gluon_conv_transpose(n, k, s, padding, output_padding):
    layer = nn.Conv2DTranspose(1, k, strides=s, padding=padding,
                               output_padding=output_padding)
    layer.initialize()
    return layer(mx.np.ones((1, 1, n, n))).shape[2]


def test_the_keras_materials_examples_hold_with_gluon_layers():
    assert gluon_conv(4, 3, 1, U.conv_padding(3, 1, 'VALID')) == 2
    assert gluon_conv(5, 3, 1, U.conv_padding(3, 1, 'SAME')) == 5
    assert gluon_conv(5, 3, 2, U.conv_padding(3, 2, 'VALID')) == 2
    p, out_p = U.conv_transpose_padding(3, 2, 'VALID')
    assert gluon_conv_transpose(2, 3, 2, p, out_p) == 5
    assert [U.tf_conv_output_size(4, 3, 1, 'VALID'),
            U.tf_conv_output_size(5, 3, 1, 'SAME'),
            U.tf_conv_output_size(5, 3, 2, 'VALID'),
            U.tf_conv_transpose_output_size(2, 3, 2, 'VALID')] == [2, 5, 2, 5]


GRID = [(n, k, s) for n in range(1, 11) for k in range(1, 8)
        for s in range(1, 5)]


@pytest.mark.parametrize('padding', ['SAME', 'VALID'])
def test_conv_padding_gives_tensorflows_size_over_a_grid(padding):
    """Every (n, k, s) either fits Gluon's symmetric padding, or is SAME
    with stride 1 and an even kernel, where pad_same does the job."""
    refused = []
    for n, k, s in GRID:
        if padding == 'VALID' and n < k:
            continue
        expected = U.tf_conv_output_size(n, k, s, padding)
        assert expected == (-(-n // s) if padding == 'SAME' else
                            len(range(0, n - k + 1, s)))
        try:
            p = U.conv_padding(k, s, padding, n=n)
        except FCNError:
            refused.append((n, k, s))
            padded = U.pad_same(onp.ones((1, 1, n, n)), k, s)
            layer = nn.Conv2D(1, k, strides=s)
            layer.initialize()
            assert layer(padded).shape[2] == expected, (n, k, s)
            continue
        assert gluon_conv(n, k, s, p) == expected, (n, k, s, p)
    assert set(refused) == {(n, k, s) for n, k, s in GRID
                            if padding == 'SAME' and s == 1 and k % 2 == 0}


@pytest.mark.parametrize('padding', ['SAME', 'VALID'])
def test_conv_transpose_padding_gives_keras_size_over_a_grid(padding):
    refused = []
    for n, k, s in GRID:
        expected = U.tf_conv_transpose_output_size(n, k, s, padding)
        assert expected == n * s + (max(k - s, 0) if padding == 'VALID'
                                    else 0)
        try:
            p, out_p = U.conv_transpose_padding(k, s, padding)
        except FCNError:
            refused.append((k, s))
            continue
        assert gluon_conv_transpose(n, k, s, p, out_p) == expected, (
            n, k, s, p, out_p)
    assert set(refused) == {(k, s) for _, k, s in GRID
                            if padding == 'SAME' and s == 1 and k % 2 == 0}


def test_odd_kernels_pad_alike_for_every_input_size():
    assert U.conv_padding(7, 3, 'SAME') == 3
    with pytest.raises(FCNError, match='pass n'):
        U.conv_padding(4, 2, 'SAME')
    with pytest.raises(FCNError, match="'SAME' or 'VALID'"):
        U.conv_padding(3, 1, 'FULL')


def test_same_pads_split_as_tensorflow_documents():
    """TensorFlow's worked example: length 13, kernel 6, stride 5 pads 3,
    one before and two after."""
    assert U.tf_same_pads(13, 6, 5) == (1, 2)
    assert U.tf_same_pads(28, 3, 2) == (0, 1)  # the autoencoder's first


@pytest.mark.filterwarnings('ignore:Using padding=.same. with even kernel')
@pytest.mark.parametrize('k', [2, 3, 4, 5])
def test_pad_same_matches_torchs_same_convolution(k):
    """PyTorch's padding='same' (stride 1) splits the zeros as TensorFlow
    does, the odd one after: an independent implementation."""
    torch = pytest.importorskip('torch')
    X = random_maps(1, 1, 7, 8)
    K = random_maps(1, 1, k, k, seed=1)
    layer = nn.Conv2D(1, k, use_bias=False)
    layer.initialize(mx.init.Constant(mx.np.array(K)))
    got = layer(U.pad_same(X, k)).asnumpy()
    expected = torch.nn.functional.conv2d(
        torch.tensor(X), torch.tensor(K), padding='same').numpy()
    assert onp.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize('factor', [2, 3])
def test_nearest_repeats_each_pixel(factor):
    X = random_maps(2, 3, 4, 5)
    expected = X.repeat(factor, axis=2).repeat(factor, axis=3)
    assert (U.nearest(X, factor).asnumpy() == expected).all()


def interpolation_matrix(n_in, n_out, align_corners):
    """(n_out, n_in) weights of 1-D linear interpolation, by hand."""
    A = onp.zeros((n_out, n_in))
    for i in range(n_out):
        if align_corners:
            src = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0
        else:
            src = max((i + 0.5) * n_in / n_out - 0.5, 0)
        i0 = min(int(src), n_in - 1)
        i1, frac = min(i0 + 1, n_in - 1), src - i0
        A[i, i0] += 1 - frac
        A[i, i1] += frac
    return A


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('size', [(14, 18), (20, 13), (5, 4)])
def test_bilinear_matches_the_formula_by_hand(size, align_corners):
    X = random_maps(2, 3, 7, 9)
    A_h = interpolation_matrix(7, size[0], align_corners)
    A_w = interpolation_matrix(9, size[1], align_corners)
    expected = onp.einsum('ij,bcjk,lk->bcil', A_h, X, A_w)
    got = U.bilinear(X, size=size, align_corners=align_corners).asnumpy()
    assert onp.allclose(got, expected, atol=1e-5)


def test_bilinear_matches_opencv_with_half_pixel_centres():
    """cv2.resize's INTER_LINEAR is align_corners=False."""
    cv2 = pytest.importorskip('cv2')
    X = random_maps(1, 1, 7, 9)
    for size in [(21, 27), (10, 4)]:
        expected = cv2.resize(X[0, 0], size[::-1],
                              interpolation=cv2.INTER_LINEAR)
        got = U.bilinear(X, size=size).asnumpy()[0, 0]
        assert onp.allclose(got, expected, atol=1e-5)
    assert U.bilinear(X, factor=2.5).shape == (1, 1, 17, 22)


@pytest.mark.parametrize('kernel_size', [2, 3])
def test_unpool_of_pool_keeps_exactly_the_maxima_in_place(kernel_size):
    k = kernel_size
    X = random_maps(2, 3, 7, 10) - 0.5  # distinct values, some negative
    pooled, indices = U.max_pool_with_indices(X, k)
    out = U.max_unpool(pooled, indices, k, (7, 10)).asnumpy()
    h, w = 7 // k, 10 // k
    window_max = X[..., :h * k, :w * k].reshape(2, 3, h, k, w, k).max(
        axis=(3, 5)).repeat(k, axis=2).repeat(k, axis=3)
    expected = onp.zeros_like(X)
    is_max = X[..., :h * k, :w * k] == window_max
    expected[..., :h * k, :w * k] = onp.where(is_max, window_max, 0)
    assert (out == expected).all()
    assert is_max.sum() == 2 * 3 * h * w  # one maximum per window


def test_ties_go_to_the_first_maximum_in_each_window():
    X = onp.ones((1, 1, 4, 4), dtype='float32')
    pooled, indices = U.max_pool_with_indices(X)
    assert indices.asnumpy().ravel().tolist() == [0, 2, 8, 10]
    out = U.max_unpool(pooled, indices).asnumpy()[0, 0]
    assert out.tolist() == [[1, 0, 1, 0], [0, 0, 0, 0],
                            [1, 0, 1, 0], [0, 0, 0, 0]]


def test_pool_and_unpool_match_torch():
    torch = pytest.importorskip('torch')
    F = torch.nn.functional
    X = random_maps(2, 3, 9, 7)
    pooled, indices = U.max_pool_with_indices(X)
    t_pooled, t_indices = F.max_pool2d(torch.tensor(X), 2,
                                       return_indices=True)
    assert (pooled.asnumpy() == t_pooled.numpy()).all()
    assert (indices.asnumpy() == t_indices.numpy()).all()
    expected = F.max_unpool2d(t_pooled, t_indices, 2, output_size=(9, 7))
    assert (U.max_unpool(pooled, indices, 2, (9, 7)).asnumpy() ==
            expected.numpy()).all()


def test_unpool_refuses_indices_of_another_window():
    pooled, indices = U.max_pool_with_indices(random_maps(1, 1, 8, 8), 4)
    with pytest.raises(FCNError, match='same kernel_size'):
        U.max_unpool(pooled.reshape(1, 1, 2, 2), indices, kernel_size=2,
                     output_size=(4, 4))


@pytest.mark.parametrize('factor', [2, 3, 4])
def test_bilinear_transposed_conv_is_bilinear_inside_darker_on_border(
        factor):
    X = random_maps(1, 3, 6, 8) + 0.5
    got = U.bilinear_transposed_conv(X, factor).asnumpy()
    expected = U.bilinear(X, factor).asnumpy()
    b = factor // 2
    assert got.shape == expected.shape == (1, 3, 6 * factor, 8 * factor)
    assert onp.allclose(got[..., b:-b, b:-b], expected[..., b:-b, b:-b],
                        atol=1e-5)
    border = onp.ones(got.shape, bool)
    border[..., b:-b, b:-b] = False
    assert (got[border] < expected[border] - 1e-3).all()



def each_method(X):
    pooled, indices = U.max_pool_with_indices(X)
    return [U.nearest(X, 2), U.bilinear(X, 2), pooled, indices,
            U.max_unpool(pooled, indices), U.bilinear_transposed_conv(X, 2),
            U.pad_same(X, 4)]


def test_results_take_the_flavour_of_the_mode_at_call_time():
    X = random_maps(1, 2, 4, 4)
    assert all(isinstance(Y, mx.np.ndarray) for Y in each_method(X))
    with mx.util.np_array(False), mx.util.np_shape(False):
        for X_in in (X, mx.nd.array(X)):
            results = each_method(X_in)
            assert not any(isinstance(Y, mx.np.ndarray) for Y in results)
            assert all(isinstance(Y, mx.nd.NDArray) for Y in results)
    assert isinstance(U.nearest(mx.nd.array(X), 2), mx.np.ndarray)


def test_bad_factors_are_refused():
    with pytest.raises(FCNError, match='positive integer'):
        U.nearest(random_maps(1, 1, 2, 2), 1.5)
    with pytest.raises(FCNError, match='pooling window must be a positive'):
        U.max_pool_with_indices(random_maps(1, 1, 4, 4), 1.5)
    with pytest.raises(FCNError, match='exactly one'):
        U.bilinear(random_maps(1, 1, 2, 2))
