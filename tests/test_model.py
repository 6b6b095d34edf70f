"""The chapter's FCN: bilinear kernel, layers, shapes, pretrained loading."""
import cv2
import mxnet as mx
import numpy as onp
import pytest
from mxnet import init, np
from mxnet.gluon import nn
from mxnet.gluon.model_zoo import model_store, vision

from gluon_fcn.d2l.download import file_sha1
from gluon_fcn.errors import FCNError
from gluon_fcn.core.model import build_fcn
from gluon_fcn.d2l import bilinear_kernel

pytestmark = pytest.mark.numerical  # again under lower ISAs


def test_bilinear_kernel_values():
    W = bilinear_kernel(3, 3, 4).asnumpy()
    assert W.shape == (3, 3, 4, 4)
    f = onp.array([0.25, 0.75, 0.75, 0.25])
    for i in range(3):
        onp.testing.assert_allclose(W[i, i], onp.outer(f, f))
        W[i, i] = 0
    assert not W.any()  # nothing off the diagonal channel pairs
    # odd size: a tent centred on the middle pixel
    g = onp.array([1 / 3, 2 / 3, 1, 2 / 3, 1 / 3])
    onp.testing.assert_allclose(bilinear_kernel(1, 1, 5).asnumpy()[0, 0],
                                onp.outer(g, g), rtol=1e-6)


def test_bilinear_transposed_conv_is_bilinear_interpolation():
    rng = onp.random.default_rng(0)
    img = rng.uniform(size=(17, 23, 3)).astype('float32')
    conv_trans = nn.Conv2DTranspose(3, kernel_size=4, padding=1, strides=2)
    conv_trans.initialize(init.Constant(bilinear_kernel(3, 3, 4)))
    X = np.array(img.transpose(2, 0, 1)[None])
    Y = conv_trans(X)[0].asnumpy().transpose(1, 2, 0)
    assert Y.shape == (34, 46, 3)
    ref = cv2.resize(img, (46, 34), interpolation=cv2.INTER_LINEAR)
    # equal away from the one-pixel border, where the two pad differently
    onp.testing.assert_allclose(Y[1:-1, 1:-1], ref[1:-1, 1:-1], atol=1e-5)


@pytest.fixture(scope='module')
def fcn():
    mx.random.seed(0)
    return build_fcn()


def test_fcn_layers_are_the_chapter_s(fcn):
    features = vision.resnet18_v2().features
    assert isinstance(fcn, nn.HybridSequential)
    assert len(fcn) == len(features) - 2 + 2
    for ours, theirs in zip(fcn[:-2], features[:-2]):
        assert type(ours) is type(theirs)
    conv, tconv = fcn[-2], fcn[-1]
    assert isinstance(conv, nn.Conv2D)
    assert conv.weight.shape == (21, 512, 1, 1)
    assert isinstance(tconv, nn.Conv2DTranspose)
    assert tconv.weight.shape == (21, 21, 64, 64)
    assert tconv._kwargs['stride'] == (32, 32)
    assert tconv._kwargs['pad'] == (16, 16)
    onp.testing.assert_array_equal(tconv.weight.data().asnumpy(),
                                   bilinear_kernel(21, 21, 64).asnumpy())


@pytest.mark.parametrize('hw', [(32, 32), (64, 96), (320, 480), (96, 160)])
def test_output_size_equals_input_size(fcn, hw):
    X = np.random.uniform(size=(1, 3) + hw)
    assert fcn(X).shape == (1, 21) + hw


def test_backbone_output_shape(fcn):
    X = np.random.uniform(size=(1, 3, 320, 480))
    assert fcn[:-2](X).shape == (1, 512, 10, 15)


def test_num_classes_and_other_backbone():
    net = build_fcn(num_classes=4, backbone='resnet18_v1')
    assert net(np.zeros((2, 3, 64, 64))).shape == (2, 4, 64, 64)
    with pytest.raises(FCNError, match='unknown backbone'):
        build_fcn(backbone='alexnet')


def test_pretrained_backbone_loads_from_local_store(tmp_path, monkeypatch):
    mx.random.seed(1)
    imagenet = vision.resnet18_v2()
    imagenet.initialize(init.Normal(0.5))
    imagenet(np.zeros((1, 3, 32, 32)))
    fname = f'resnet18_v2-{model_store.short_hash("resnet18_v2")}.params'
    assert fname == 'resnet18_v2-a81db45f.params'
    made = tmp_path / 'made.params'
    imagenet.save_parameters(str(made))
    # the real sha1 (and the name's short hash) belong to the real file;
    # let the store accept ours for this test
    sha1 = file_sha1(str(made))
    monkeypatch.setitem(model_store._model_sha1, 'resnet18_v2', sha1)
    made.rename(tmp_path / f'resnet18_v2-{sha1[:8]}.params')
    net = build_fcn(pretrained_backbone=True, root=str(tmp_path))
    for ours, theirs in zip(net[:-2].collect_params().values(),
                            imagenet.features.collect_params().values()):
        onp.testing.assert_array_equal(ours.data().asnumpy(),
                                       theirs.data().asnumpy())


def test_missing_pretrained_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv('MXNET_GLUON_REPO', 'http://127.0.0.1:9/')
    with pytest.raises(FCNError) as e:
        build_fcn(pretrained_backbone=True, root=str(tmp_path))
    assert 'resnet18_v2-a81db45f.params' in str(e.value)
    assert str(tmp_path) in str(e.value)
