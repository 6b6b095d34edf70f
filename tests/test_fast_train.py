"""train_fcn: the chapter's training on the fast path, frozen backbones."""
import math

import mxnet as mx
import pytest
from mxnet import gluon

from gluon_fcn.core.model import backbone_params, build_fcn
from gluon_fcn.core.training import seed_everything
from gluon_fcn.d2l import VOCSegDataset
from gluon_fcn.fast import native, train_fcn
from gluon_fcn.fast.upsample import QuadrantConv2DTranspose


@pytest.fixture(scope='module')
def loaders(synth_voc):
    return [gluon.data.DataLoader(VOCSegDataset(is_train, (64, 96),
                                                synth_voc),
                                  4, shuffle=is_train, last_batch='discard')
            for is_train in (True, False)]


def snapshot(params):
    return {k: v.data().asnumpy().copy() for k, v in params.items()}


def changed(params, before):
    return {k for k, v in params.items()
            if (v.data().asnumpy() != before[k]).any()}


@pytest.mark.parametrize('head', ['32s', '8s'])
def test_backbone_params_are_all_but_the_head(head):
    net = build_fcn(3, 'resnet18_v1', head)
    backbone = set(backbone_params(net).keys())
    layers = ([net[-2], net[-1]] if head == '32s' else
              [net.score32, net.score16, net.score8, net.up32, net.up16,
               net.upsample])
    head_params = {k for layer in layers
                   for k in layer.collect_params().keys()}
    assert len(head_params) == 2 * len(layers)  # weights and biases
    assert backbone == set(net.collect_params().keys()) - head_params


@pytest.fixture(scope='module')
def trained(loaders):
    """The chapter's net before and after `train_fcn`'s 2 epochs."""
    seed_everything(0)
    net = build_fcn(21)
    before = snapshot(net.collect_params())
    history = train_fcn(net, *loaders, num_epochs=2, progress=False)
    return net, before, history


def test_train_fcn_trains_and_returns_each_epoch(trained):
    net, before, history = trained
    assert [r['epoch'] for r in history.epochs] == [1, 2]
    assert all(math.isfinite(r['loss']) and 0 <= r['test_miou'] <= 1
               for r in history.epochs)
    assert len(changed(net.collect_params(), before)) > len(before) // 2


def test_train_fcn_takes_the_fast_upsampler(trained):
    if not native.load():
        pytest.skip('the native operators do not build here')
    assert isinstance(trained[0][-1], QuadrantConv2DTranspose)


def test_frozen_backbone_stays_and_the_head_learns(loaders):
    seed_everything(0)
    net = build_fcn(21, 'resnet18_v1', '8s')
    frozen = backbone_params(net)
    frozen.setattr('grad_req', 'null')
    before = snapshot(net.collect_params())
    train_fcn(net, *loaders, num_epochs=1, optimizer='adam', lr=1e-3,
              wd=0, progress=False)
    moved = changed(net.collect_params(), before)
    assert not moved & set(frozen.keys())  # BatchNorm statistics too
    assert {net.score8.weight.name, net.upsample.weight.name} <= moved
    assert net(mx.np.zeros((1, 3, 64, 64))).shape == (1, 21, 64, 64)
