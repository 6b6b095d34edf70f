"""Whole-image prediction by sliding windows."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import np
from mxnet.gluon import nn

from gluon_fcn.d2l import normalize_image, predict
from gluon_fcn.core.model import build_fcn
from gluon_fcn.core.predict import (predict_image, predict_sliding,
                                    window_starts)


@pytest.mark.parametrize('length', [320, 321, 500, 513, 1000])
def test_windows_cover_every_pixel_and_stay_inside(length):
    starts = window_starts(length, 320, 213)
    covered = onp.zeros(length, int)
    for s in starts:
        covered[s:s + 320] += 1
    assert covered.min() >= 1 and starts[0] == 0
    assert starts[-1] + 320 == length  # the last one shifted back inside
    assert starts == sorted(set(starts))


class FirstChannel(nn.HybridBlock):
    """A 'network' whose logits are its input's first channel."""
    def hybrid_forward(self, F, X):
        return F.np.copy(X[:, :1]) if hasattr(F, 'np') else X[:, :1]


@pytest.mark.parametrize('hw', [(281, 500), (513, 513), (100, 90)])
def test_windows_put_every_logit_back_in_place(hw):
    rng = onp.random.default_rng(0)
    img = np.array(rng.integers(0, 256, hw + (3,)), dtype='uint8')
    logits = predict_sliding(FirstChannel(), img, window=(160, 224),
                             stride=(100, 150))
    assert logits.shape == (1,) + hw
    onp.testing.assert_allclose(logits[0].asnumpy(),
                                normalize_image(img)[:, :, 0].asnumpy(),
                                rtol=1e-6, atol=1e-6)


@pytest.fixture(scope='module')
def net():
    mx.random.seed(0)
    return build_fcn(num_classes=5)


def test_one_window_is_a_plain_forward_pass(net):
    img = np.array(onp.random.default_rng(1).integers(0, 256, (96, 128, 3)),
                   dtype='uint8')
    logits = predict_sliding(net, img, window=(96, 128))
    X = np.expand_dims(normalize_image(img).transpose(2, 0, 1), 0)
    onp.testing.assert_allclose(logits.asnumpy(), net(X)[0].asnumpy(),
                                rtol=1e-5, atol=1e-5)
    assert (predict(net, img) == logits.argmax(axis=0)).all()


@pytest.mark.parametrize('hw', [(281, 500), (513, 513), (1, 1)])
def test_predictions_of_odd_sizes_come_back_the_same_size(net, hw):
    img = np.array(onp.random.default_rng(2).integers(0, 256, hw + (3,)),
                   dtype='uint8')
    assert predict_sliding(net, img, window=(320, 480)).shape == (5,) + hw
    assert predict_image(net, img).shape == hw
