"""FCN-32s/16s/8s on every backbone: one builder, no copied bodies."""
import gc

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, init, np
from mxnet.gluon.model_zoo import model_store, vision

from gluon_fcn.d2l.download import file_sha1
from gluon_fcn.errors import FCNError
from gluon_fcn.core.model import BACKBONES, HEADS, SkipFCN, build_fcn


@pytest.fixture(scope='module')
def built():
    """build_fcn(3, backbone, head), the last one kept for the next test
    that asks for it (VGG16's fc6 alone is 100M weights to initialise);
    only one, for all 21 held at once took 12 GB."""
    last = {}

    def build(backbone, head):
        if (backbone, head) not in last:
            last.clear()
            gc.collect()  # a Block's cycles hold its arrays until then
            mx.random.seed(0)
            last[backbone, head] = build_fcn(3, backbone, head)
        return last[backbone, head]
    return build


@pytest.mark.parametrize('head', HEADS)
@pytest.mark.parametrize('backbone', BACKBONES)
def test_every_backbone_and_head_builds_runs_and_trains(backbone, head,
                                                        built):
    """The smallest input a 32s net takes, one pixel at 1/32: the shapes
    and one step of training, cheaply."""
    net = built(backbone, head)
    X = np.random.uniform(size=(2, 3, 32, 64))
    y = np.array(onp.random.default_rng(0).integers(0, 3, (2, 32, 64)),
                 dtype='float32')
    assert net(X).shape == (2, 3, 32, 64)
    before = {k: v.data().copy() for k, v in net.collect_params().items()}
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.01})
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss(axis=1)(net(X), y)
    loss.backward()
    trainer.step(2)
    assert onp.isfinite(loss.asnumpy()).all()
    changed = [k for k, v in net.collect_params().items()
               if not (v.data() == before[k]).all()]
    assert len(changed) > len(before) // 3
    if head != '32s':  # the skips start at zero and learn
        assert not before[net.score16.weight.name].asnumpy().any()
        assert net.score16.weight.name in changed


@pytest.mark.parametrize('head', ['16s', '8s'])
def test_skip_heads_keep_any_multiple_of_32(head):
    net = build_fcn(4, 'resnet18_v1', head)
    assert isinstance(net, SkipFCN)
    for hw in [(32, 32), (96, 160), (320, 480)]:
        assert net(np.zeros((1, 3) + hw)).shape == (1, 4) + hw


def test_head_taps_the_paper_s_layers(built):
    net = built('vgg16', '8s')
    X = np.zeros((1, 3, 64, 64))
    f8 = net.stage8(X)
    f16 = net.stage16(f8)
    assert f8.shape[1:] == (256, 8, 8)    # pool3
    assert f16.shape[1:] == (512, 4, 4)   # pool4
    assert net.stage32(f16).shape[1:] == (4096, 2, 2)  # fc7 as a conv
    net = built('resnet18_v2', '8s')
    f8 = net.stage8(X)
    f16 = net.stage16(f8)
    assert f8.shape[1:] == (128, 8, 8)    # the end of the second stage
    assert f16.shape[1:] == (256, 4, 4)   # the end of the third


def test_unknown_head_is_an_error():
    with pytest.raises(FCNError, match="unknown head '4s'"):
        build_fcn(head='4s')


def test_vgg16_fc6_fc7_as_convolutions_keep_the_weights(tmp_path,
                                                       monkeypatch):
    """With ImageNet weights, fc7's output at the centre of a 224x224
    input equals VGG16's own dense fc7."""
    mx.random.seed(2)
    vgg = vision.vgg16()
    vgg.initialize(init.Normal(0.01))
    X = np.random.uniform(size=(1, 3, 224, 224))
    vgg(X)
    made = tmp_path / 'made.params'
    vgg.save_parameters(str(made))
    sha1 = file_sha1(str(made))
    monkeypatch.setitem(model_store._model_sha1, 'vgg16', sha1)
    made.rename(tmp_path / f'vgg16-{sha1[:8]}.params')
    net = build_fcn(2, 'vgg16', pretrained_backbone=True,
                    root=str(tmp_path))
    dense = vgg.features[:-1](X)  # fc7 after ReLU, before dropout
    conv = net[:-2](X)             # (1, 4096, 7, 7)
    onp.testing.assert_allclose(conv[0, :, 3, 3].asnumpy(),
                                dense[0].asnumpy(), rtol=1e-4, atol=1e-5)
