"""The private MXNet attributes gluon-fcn reads (core.mxnet_internals),
each on a real block: a different MXNet fails here, not deep in a run."""
import json
import os
import warnings

import mxnet as mx
import pytest
from mxnet import gluon
from mxnet.gluon import nn

from gluon_fcn.core import mxnet_internals as mi

pytestmark = pytest.mark.usefixtures('legacy_mode')  # `mx.nd` arrays


def small_net():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, padding=1, in_channels=3),
            nn.Conv2DTranspose(2, 4, strides=2, padding=1, in_channels=4))
    net.initialize()
    return net


def test_cached_graph_is_the_traced_graph():
    net = small_net()
    net.hybridize()
    net(mx.nd.zeros((1, 3, 8, 8)))
    inputs, sym = mi.cached_graph(net)
    assert [i.name for i in inputs] == ['data']
    ops = [n['op'] for n in json.loads(sym.tojson())['nodes']]
    assert ops.count('Convolution') == 1 and ops.count('Deconvolution') == 1
    # the graph computes what the net does
    x = mx.nd.random.uniform(shape=(1, 3, 8, 8))
    with warnings.catch_warnings():  # "Cannot decide type for data"
        warnings.simplefilter('ignore')
        graph = gluon.SymbolBlock(sym, inputs, params=net.collect_params())
    assert (graph(x) - net(x)).abs().max().asscalar() < 1e-6


def test_child_blocks_in_order_by_registered_name():
    net = small_net()
    children = mi.child_blocks(net)
    assert list(children) == ['0', '1']
    assert children['0'] is net[0] and children['1'] is net[1]
    assert mi.child_blocks(net[0]) == {}


def test_hybrid_flags_are_those_hybridize_took():
    layer = small_net()[1]
    assert mi.hybrid_flags(layer) == (False, {})
    layer.hybridize(static_alloc=True, static_shape=False)
    active, flags = mi.hybrid_flags(layer)
    assert active is True
    assert flags['static_alloc'] is True and flags['static_shape'] is False


def test_conv_settings_and_channels_of_a_transposed_convolution():
    layer = nn.Conv2DTranspose(21, 64, strides=32, padding=16,
                               in_channels=512)
    kw = mi.conv_settings(layer)
    assert (kw['kernel'], kw['stride'], kw['pad']) == ((64, 64), (32, 32),
                                                       (16, 16))
    assert kw['dilate'] == (1, 1) and kw['num_group'] == 1
    assert kw['no_bias'] is False and kw['adj'] == (0, 0)
    assert kw['layout'] == 'NCHW'
    assert mi.conv_channels(layer) == (21, 512)
    assert mi.conv_channels(nn.Conv2D(8, 3)) == (8, 0)  # deferred


def test_structured_params_are_the_names_save_parameters_writes(tmp_path):
    net = small_net()
    params = mi.structured_params(net)
    assert sorted(params) == ['0.bias', '0.weight', '1.bias', '1.weight']
    assert params['1.weight'] is net[1].weight
    path = str(tmp_path / 'net.params')
    net.save_parameters(path)
    assert sorted(mx.nd.load(path)) == sorted(params)


def test_repo_file_url_follows_mxnet_gluon_repo(monkeypatch):
    monkeypatch.setenv('MXNET_GLUON_REPO', 'https://mirror.example/')
    assert mi.repo_file_url('gluon/dataset/mnist', 'f.gz') == \
        'https://mirror.example/gluon/dataset/mnist/f.gz'


def test_dataset_arrays_are_what_the_dataset_serves(tmp_path):
    # MNIST downloads in __init__; its base class, which serves every
    # item from the two arrays, is given them here as MNIST gives them
    base = gluon.data.dataset._DownloadedDataset
    assert issubclass(gluon.data.vision.MNIST, base)
    images = mx.nd.arange(2 * 4 * 4).reshape((2, 4, 4, 1))
    labels = [3, 7]

    class Tiny(base):
        def _get_data(self):
            self._data, self._label = images, labels

    dataset = Tiny(str(tmp_path), None)
    data, label = mi.dataset_arrays(dataset)
    for i in range(2):
        x, y = dataset[i]
        assert (x == data[i]).min() == 1 and y == label[i]
    assert not os.listdir(tmp_path)  # nothing downloaded
