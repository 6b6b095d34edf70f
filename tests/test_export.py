"""Export round trips: runs trained with the native operators, written as
MXNet symbol files and as ONNX, read back by MXNet and onnxruntime."""
import os

import numpy as onp
import pytest
from PIL import Image

from cli_output import fails
from conftest import TINY
from gluon_fcn.app.cli import main
from gluon_fcn.app.loading import read_run
from gluon_fcn.core.arrays import array
from gluon_fcn.fast.portable import OnnxNet, load_mxnet, max_relative_error
from gluon_fcn.fast.native import cpu_model
from gluon_fcn.fast.upsample import QuadrantConv2DTranspose, find_layers

pytest.importorskip('onnxruntime')
SHAPE, OTHER = (64, 64), (2, 96, 128)  # export size; (B, H, W) beside


@pytest.fixture(scope='module', params=['32s', '8s'])
def run(request, tiny_run, tiny_voc, tmp_path_factory):
    """A run trained a few steps, its transposed convolutions computed by
    the native operators, as `train` does by default: the session's tiny
    run for the chapter's head."""
    if request.param == '32s':
        return tiny_run
    out = str(tmp_path_factory.mktemp(f'run{request.param}') / 'run')
    assert main(['train', '--data', tiny_voc, '--out', out, '--epochs', '1',
                 '--head', request.param] + TINY) == 0
    return out


def trained_net(run):
    """The run's net as MXNet's graph computes it, native operators in."""
    net = read_run(run)[0]
    if not find_layers(net, lambda b: isinstance(b, QuadrantConv2DTranspose)):
        pytest.skip('the native operators do not build here')
    net.hybridize()
    return net


def batch(b, h, w, seed=0):
    return array(onp.random.RandomState(seed).standard_normal(
        (b, 3, h, w)).astype('float32'))


@pytest.fixture(scope='module')
def onnx_dynamic(run):
    path = os.path.join(os.path.dirname(run), 'fcn.onnx')
    assert main(['export', '--run', run, '--format', 'onnx', '--out', path,
                 '--dynamic']) == 0
    return path


def test_mxnet_symbol_files_load_into_an_equal_net(run, tmp_path, capsys):
    stem = str(tmp_path / 'fcn')
    assert main(['export', '--run', run, '--format', 'mxnet', '--out',
                 stem]) == 0
    assert 'max relative error' in capsys.readouterr().out
    assert os.path.isfile(f'{stem}-symbol.json')
    net, exported = trained_net(run), load_mxnet(stem)
    for X in (batch(1, *SHAPE), batch(*OTHER, seed=1)):
        assert max_relative_error(exported(X), net(X)) <= 1e-6


def test_onnx_dynamic_equals_mxnet_at_two_sizes(run, onnx_dynamic):
    net, exported = trained_net(run), OnnxNet(onnx_dynamic)
    assert exported.dynamic and exported.window == SHAPE
    for X in (batch(1, *SHAPE), batch(*OTHER, seed=1)):
        assert max_relative_error(exported(X), net(X)) <= 1e-4


def test_onnx_fixed_shape_equals_mxnet(run, tmp_path):
    path = str(tmp_path / 'fixed.onnx')
    assert main(['export', '--run', run, '--format', 'onnx', '--out', path,
                 '--shape', '64,96']) == 0
    exported = OnnxNet(path)
    assert not exported.dynamic and exported.window == (64, 96)
    X = batch(1, 64, 96)
    assert max_relative_error(exported(X), trained_net(run)(X)) <= 1e-4


def test_predict_onnx_writes_the_run_s_masks(run, onnx_dynamic, tiny_voc,
                                             tmp_path, capsys):
    """A user checks an export on photos: the same masks as the run's."""
    images = [os.path.join(tiny_voc, 'JPEGImages', name)
              for name in sorted(os.listdir(os.path.join(tiny_voc,
                                                         'JPEGImages')))[:2]]
    for source, folder in ((['--run', run], 'run'),
                           (['--onnx', onnx_dynamic], 'onnx')):
        assert main(['predict'] + source + ['--out', str(tmp_path / folder)]
                    + images) == 0
    out = capsys.readouterr().out.splitlines()
    # each says what it computes on, then the same line an image
    assert out[0].startswith('predicting in fp32 on ')
    assert out[3] == f'predicting in fp32 on onnxruntime, {cpu_model()}'
    assert out[1:3] == out[4:]
    for path in images:
        png = os.path.basename(path)[:-4] + '.png'
        masks = [onp.array(Image.open(tmp_path / f / png))
                 for f in ('run', 'onnx')]
        assert masks[0].shape == Image.open(path).size[::-1]
        assert (masks[0] == masks[1]).all()


def test_predict_onnx_of_a_file_that_is_not_onnx(tiny_voc, tmp_path,
                                                 capsys):
    fake = tmp_path / 'fcn.onnx'
    fake.write_text('not a model\n')
    image = os.path.join(tiny_voc, 'JPEGImages',
                         sorted(os.listdir(os.path.join(tiny_voc,
                                                        'JPEGImages')))[0])
    out = tmp_path / 'out'
    err = fails(['predict', '--onnx', str(fake), '--out', str(out), image],
                capsys)
    assert str(fake) in err and not out.exists()


@pytest.mark.parametrize('args,named', [
    (['--run', 'r', '--format', 'mxnet', '--dynamic'], '--dynamic'),
    (['--model', 'fcn_vgg16_voc', '--format', 'onnx'], "'fcn_vgg16_voc'"),
    (['--run', 'r', '--format', 'onnx', '--shape', '60,60'], '--shape'),
    (['--run', 'no/run', '--format', 'onnx'], 'no/run'),
])
def test_export_bad_input_is_one_line(args, named, tmp_path, capsys):
    out = tmp_path / 'out' / 'fcn'
    err = fails(['export'] + args + ['--out', str(out)], capsys)
    assert named in err and not out.parent.exists()
