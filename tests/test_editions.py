"""Both MXNet editions of the chapter in one process (issue 12): the
package changes no MXNet mode, the v1 chapter's own cells run in legacy
mode after importing it, blocks take their caller's flavour, and a run's
parameters load in either mode."""
import subprocess
import sys

import mxnet as mx
import numpy as onp
import pytest
from mxnet import init, nd, np
from mxnet.gluon import model_zoo, nn

from gluon_fcn import build_fcn, d2l, v1


@pytest.mark.parametrize('set_np', [False, True])
def test_importing_the_package_changes_no_mode(set_np):
    code = ('import mxnet as mx\n'
            'from mxnet import npx\n'
            + ('npx.set_np()\n' if set_np else '') +
            'import gluon_fcn, gluon_fcn.d2l, gluon_fcn.v1\n'
            'from gluon_fcn import build_fcn, load_run\n'
            'import gluon_fcn.app.cli, gluon_fcn.fast\n'
            'print(mx.util.is_np_array(), mx.util.is_np_shape())\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == [str(set_np)] * 2


def test_the_v1_chapter_s_cells_run_in_legacy_mode(legacy_mode):
    """The issue's report: after `import gluon_fcn`, the v1 chapter's net
    and `build_fcn` work with `nd` arrays."""
    X = nd.random.uniform(shape=(1, 3, 64, 96))
    out = build_fcn(21)(X)
    assert type(out) is nd.NDArray and out.shape == (1, 21, 64, 96)
    pretrained_net = model_zoo.vision.resnet18_v2()
    pretrained_net.initialize()
    net = nn.HybridSequential()
    for layer in pretrained_net.features[:-2]:
        net.add(layer)
    net.add(nn.Conv2D(21, kernel_size=1),
            nn.Conv2DTranspose(21, kernel_size=64, padding=16, strides=32))
    net[-2].initialize(init.Xavier())
    net[-1].initialize(init.Constant(v1.bilinear_kernel(21, 21, 64)))
    assert net(X).shape == (1, 21, 64, 96)


def test_blocks_take_the_flavour_of_their_mode(legacy_mode):
    legacy = build_fcn(3)
    assert type(legacy[-1].weight.data()) is nd.NDArray
    mx.npx.set_np()
    try:
        numpy = build_fcn(3)
        assert type(numpy[-1].weight.data()) is np.ndarray
        assert type(numpy(np.zeros((1, 3, 32, 32)))) is np.ndarray
    finally:
        mx.npx.reset_np()


def test_a_legacy_mode_test_runs_in_legacy_mode(legacy_mode):
    assert not mx.util.is_np_array() and not mx.util.is_np_shape()


@pytest.mark.parametrize('legacy', [False, True])
@pytest.mark.parametrize('found', [False, True])
def test_the_mode_a_test_leaves_does_not_leak(found, legacy):
    """`mxnet_mode`'s switch driven by hand: the test runs in the mode it
    asked for, and a mode it leaves switched is undone. (Checked from the
    next test it could not fail: the fixture sets that test's mode.)"""
    from conftest import in_mode
    before = mx.util.is_np_array()
    (mx.npx.set_np if found else mx.npx.reset_np)()
    try:
        steps = in_mode(legacy)
        next(steps)
        assert mx.util.is_np_array() is not legacy
        (mx.npx.set_np if legacy else mx.npx.reset_np)()  # the test's leak
        next(steps, None)
        assert mx.util.is_np_array() is found
        assert mx.util.is_np_shape() is found
    finally:
        (mx.npx.set_np if before else mx.npx.reset_np)()


@pytest.fixture
def run(tiny_run):
    """The session's tiny run (conftest)."""
    return tiny_run


def run_logits(run, X):
    from gluon_fcn.app.loading import load_run
    net, _ = load_run(run)
    return net(X)


def test_a_run_loads_and_predicts_in_either_mode(run, legacy_mode):
    """fcn.params is legacy-format: plain MXNet reads it with NumPy mode
    off, `load_run` in both modes, with the same logits."""
    arrays = mx.nd.load(f'{run}/fcn.params')
    assert all(type(a) is nd.NDArray for a in arrays.values())
    x = onp.random.RandomState(0).rand(1, 3, 96, 128).astype('float32')
    legacy = run_logits(run, nd.array(x))
    assert type(legacy) is nd.NDArray
    mx.npx.set_np()
    try:
        numpy = run_logits(run, np.array(x))
        assert type(numpy) is np.ndarray
    finally:
        mx.npx.reset_np()
    onp.testing.assert_allclose(numpy.asnumpy(), legacy.asnumpy(),
                                rtol=1e-5, atol=1e-5)


def test_the_editions_share_the_chapter_s_kernel():
    """The two books' bilinear_kernel: one returns mxnet.numpy arrays,
    the other nd arrays, with the same values."""
    a, b = d2l.bilinear_kernel(3, 3, 4), v1.bilinear_kernel(3, 3, 4)
    assert type(a) is np.ndarray and isinstance(b, nd.NDArray)
    assert (a.asnumpy() == b.asnumpy()).all()
