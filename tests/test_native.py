"""The native operators (gluon_fcn/fast/csrc) and the fast model they make,
against MXNet's own operators and the chapter's layers (issue 5)."""
import os
import shutil
import subprocess
import sys

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, np

from gluon_fcn.core.model import build_fcn
from gluon_fcn.core.training import PixelSoftmaxCELoss
from gluon_fcn.fast import (FusedPixelSoftmaxCELoss, accelerate,
                            fused_pixel_nll, make_fused_loss, native)
from gluon_fcn.fast.upsample import QuadrantConv2DTranspose

pytestmark = pytest.mark.skipif(not native.load(),
                                reason='native operators not built here')


def pixel_nll(pred, label, ignore_label=None):
    """The chapter's loss with MXNet's operators."""
    return PixelSoftmaxCELoss(ignore_label)(pred, label)


def loss_and_grad(nll, logits, label, head, ignore_label=None):
    pred = np.array(logits, dtype='float32')
    pred.attach_grad()
    with autograd.record():
        l = nll(pred, label, ignore_label)
    l.backward(np.array(head, dtype='float32'))
    return l.asnumpy(), pred.grad.asnumpy()


@pytest.mark.parametrize('ignore_label', [None, 255])
def test_fused_loss_equals_mxnet_operators(ignore_label):
    """Values and gradients, for any head gradient (not only ones), with
    labels outside [0, C) clipped as `pick` does and void pixels left out
    of each example's mean."""
    rng = onp.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 17, 23)) * 4
    y = rng.integers(0, 5, (3, 17, 23)).astype('float32')
    y[0, 0, :3] = (-2, 7, 5)  # clipped to 0, 4, 4
    if ignore_label is not None:
        y[1, :4] = ignore_label
        y[2] = ignore_label  # no valid pixel: loss 0, gradient 0
    label, head = np.array(y), rng.normal(size=3)
    (l1, g1), (l2, g2) = [loss_and_grad(f, logits, label, head,
                                        ignore_label)
                          for f in (pixel_nll, fused_pixel_nll)]
    onp.testing.assert_allclose(l2, l1, rtol=1e-6, atol=1e-7)
    assert onp.abs(g2 - g1).max() <= 1e-5 * onp.abs(g1).max()
    if ignore_label is not None:
        assert l2[2] == 0 and not g2[2].any()
        assert not g2[1][:, :4].any()


def test_fused_loss_is_nan_where_the_logits_are():
    """A NaN logit makes its example's loss NaN, so training stops with
    'the loss is nan' instead of going on."""
    logits = onp.zeros((2, 3, 4, 4), dtype='float32')
    logits[1, 2, 3, 3] = onp.nan
    l = fused_pixel_nll(np.array(logits), np.zeros((2, 4, 4)))
    assert onp.isfinite(l[0].item()) and onp.isnan(l[1].item())


def test_fused_loss_refuses_labels_that_are_not_numbers():
    """NaN and inf labels are an error (MXNet's `pick` would read them as
    class 0); an integral float ignore_label is taken as the integer."""
    logits = np.zeros((1, 3, 2, 2))
    for bad in (onp.nan, onp.inf):
        y = onp.zeros((1, 2, 2), dtype='float32')
        y[0, 1, 0] = bad
        with pytest.raises(mx.MXNetError, match='labels must be finite'):
            fused_pixel_nll(logits, np.array(y)).asnumpy()
    y = np.array([[[255, 1], [0, 255]]])
    assert fused_pixel_nll(logits, y, 255.0).item() == \
        fused_pixel_nll(logits, y, 255).item() == pytest.approx(onp.log(3))


def test_the_loss_uses_the_native_operator_only_where_it_can_run():
    loss = make_fused_loss('d2l')
    assert isinstance(loss, FusedPixelSoftmaxCELoss)
    assert native.usable(np.zeros((1, 2, 3, 3)))
    assert not native.usable(np.zeros((1, 2, 3, 3), dtype='float64'))
    logits = np.array(onp.random.default_rng(1).normal(size=(2, 3, 4, 5)),
                      dtype='float64')
    y = np.ones((2, 4, 5))
    onp.testing.assert_allclose(loss(logits, y).asnumpy(),
                                pixel_nll(logits, y).asnumpy())


def one_step_gradients(net, X, y):
    loss = make_fused_loss('d2l')
    with autograd.record():
        out = net(X)
        l = loss(out, y)
    l.backward()
    return out.asnumpy(), {name.split('_', 1)[1]: p.grad().asnumpy()
                         for name, p in net.collect_params().items()
                         if p.grad_req != 'null'}


@pytest.mark.parametrize('head', ['32s', '8s'])
def test_build_fcn_is_the_chapter_model_values_and_gradients(head,
                                                             tmp_path):
    """`accelerate(build_fcn())` (quadrant split) and `build_fcn()` (the
    chapter's layers) hold the same parameters and give the same outputs
    and gradients of every parameter, the backbone's too (upsamplers
    random here, not only bilinear)."""
    mx.random.seed(0)
    fast = accelerate(build_fcn(21, head=head))
    chapter = build_fcn(21, head=head)
    assert not any(isinstance(b, QuadrantConv2DTranspose)
                   for b in chapter._children.values())
    rng = onp.random.default_rng(2)
    ups = ([fast.up32, fast.up16, fast.upsample] if head == '8s' else
           [fast[-1]])
    assert all(isinstance(up, QuadrantConv2DTranspose) for up in ups)
    for up in ups:  # not only bilinear
        up.weight.set_data(np.array(rng.normal(size=up.weight.shape) / 100,
                                    dtype='float32'))
    fast.save_parameters(str(tmp_path / 'fcn.params'))
    chapter.load_parameters(str(tmp_path / 'fcn.params'))
    X = np.array(rng.normal(size=(2, 3, 64, 96)), dtype='float32')
    y = np.array(rng.integers(0, 21, (2, 64, 96)), dtype='float32')
    (o1, g1), (o2, g2) = [one_step_gradients(net, X, y)
                          for net in (chapter, fast)]
    assert onp.abs(o2 - o1).max() <= 1e-5 * onp.abs(o1).max()
    assert g1.keys() == g2.keys()
    for name in g1:  # rounding, amplified by BatchNorm: 5e-5 measured
        scale = onp.abs(g1[name]).max()
        assert onp.abs(g2[name] - g1[name]).max() <= 2e-4 * scale, name


def test_without_native_operators_accelerate_keeps_the_chapter_layers(
        monkeypatch):
    monkeypatch.setattr(native, '_loaded', False)
    net = accelerate(build_fcn(3))
    assert type(net[-1]) is gluon.nn.Conv2DTranspose
    assert not native.usable(np.zeros((1, 3, 2, 2)))


def python(code, **env):
    return subprocess.run([sys.executable, '-c', code], text=True,
                          capture_output=True, env={**os.environ, **env})


def test_operators_build_into_an_empty_cache(tmp_path):
    """What a fresh machine does on first use: compile, cache, load; with
    -Werror added, so that a warning of -Wall -Wextra fails it."""
    proc = python('from gluon_fcn.fast import native; print(native.load(), '
                  'native.library_path())', GLUON_FCN_CACHE=str(tmp_path),
                  GLUON_FCN_CXXFLAGS='-Werror')
    loaded, path = proc.stdout.split()
    assert loaded == 'True', proc.stderr
    assert os.path.dirname(path) == str(tmp_path) and os.path.isfile(path)
    assert [f for f in os.listdir(tmp_path)] == [os.path.basename(path)]


def test_no_compiler_is_one_warning_and_the_chapter_layers(tmp_path):
    proc = python('import gluon_fcn.core.model as m; from gluon_fcn.fast '
                  'import native, accelerate; net = accelerate(m.build_fcn(3));'
                  ' print(native.load(), type(net[-1]).__name__)',
                  GLUON_FCN_CACHE=str(tmp_path), CXX='no-such-c++')
    assert proc.stdout.split() == ['False', 'Conv2DTranspose']
    warnings = [line for line in proc.stderr.splitlines()
                if 'native operators unavailable' in line]
    assert len(warnings) == 1 and 'no C++ compiler' in warnings[0]
    assert not os.listdir(tmp_path)  # nothing half-written


def test_fast_path_in_legacy_mode_gives_legacy_arrays_and_same_numbers(
        legacy_mode, tmp_path):
    """Blocks built with NumPy mode off take and give NDArrays, through
    the quadrant split and the fused loss too, with the chapter's
    numbers."""
    mx.random.seed(0)
    chapter = build_fcn(5, head='8s')
    fast = accelerate(build_fcn(5, head='8s'))
    chapter.save_parameters(str(tmp_path / 'p.params'))
    fast.load_parameters(str(tmp_path / 'p.params'))
    rng = onp.random.default_rng(3)
    X = mx.nd.array(rng.normal(size=(2, 3, 64, 96)))
    y = mx.nd.array(rng.integers(0, 5, (2, 64, 96)))
    outs = []
    for net, loss in ((chapter, PixelSoftmaxCELoss()),
                      (fast, make_fused_loss('d2l'))):
        net.hybridize()
        with autograd.record():
            out = net(X)
            l = loss(out, y)
        l.backward()
        assert type(out) is mx.nd.NDArray and type(l) is mx.nd.NDArray
        outs.append((out.asnumpy(), l.asnumpy(),
                     net.collect_params()[net.prefix + 'conv0_weight']
                     .grad().asnumpy()))
    (o1, l1, g1), (o2, l2, g2) = outs
    assert onp.abs(o2 - o1).max() <= 1e-5 * onp.abs(o1).max()
    onp.testing.assert_allclose(l2, l1, rtol=1e-5)
    assert onp.abs(g2 - g1).max() <= 2e-4 * onp.abs(g1).max()


# the fast path's numbers in a child process, saved to OUT (.npz): the
# upsampler's output and gradients at each stride with an AVX-512 kernel
# and one without, the loss and its gradient, a whole net's output
NUMBERS = '''
import os, sys
import numpy as onp
from mxnet import autograd, np, npx
from gluon_fcn.core.model import build_fcn
from gluon_fcn.fast import accelerate, make_fused_loss, native
npx.set_np()
rng = onp.random.default_rng(0)
got = {'loaded': onp.array(native.load())}
def grads(layer, X, head):
    X = np.array(X, dtype='float32')
    X.attach_grad()
    with autograd.record():
        out = layer(X)
    out.backward(np.array(head, dtype='float32'))
    return [out, X.grad] + [p.grad() for p in
                            layer.collect_params().values()
                            if p.grad_req != 'null']
for stride in (2, 16, 32, 64):
    from mxnet.gluon import nn
    layer = nn.Conv2DTranspose(4, 2 * stride, stride, stride // 2,
                               in_channels=4)
    layer.initialize()
    layer.weight.set_data(np.array(rng.normal(size=layer.weight.shape)))
    layer.bias.set_data(np.array(rng.normal(size=4)))
    net = nn.HybridSequential()
    net.add(layer)
    net = accelerate(net)
    X = rng.normal(size=(2, 4, 3, 5))
    head = rng.normal(size=(2, 4, 3 * stride, 5 * stride))
    for i, a in enumerate(grads(net, X, head)):
        got[f'up{stride}_{i}'] = a.asnumpy()
net = accelerate(build_fcn(5))
net.initialize(force_reinit=True)
X = np.array(rng.normal(size=(2, 3, 64, 96)), dtype='float32')
y = np.array(rng.integers(0, 5, (2, 64, 96)), dtype='float32')
X.attach_grad()
with autograd.record():
    out = net(X)
    loss = make_fused_loss('d2l')(out, y)
loss.backward()
got.update(type=onp.array(type(net[-1]).__name__), out=out.asnumpy(),
           loss=loss.asnumpy(), dX=X.grad.asnumpy())
onp.savez(os.environ['OUT'], **got)
'''


def numbers(tmp_path, name, **env):
    """What NUMBERS computes in a child process with `env` set, seeded
    (MXNet's initializers too: MXNET_SEED)."""
    out = str(tmp_path / f'{name}.npz')
    proc = python(NUMBERS, OUT=out, MXNET_SEED='0', **env)
    assert proc.returncode == 0, proc.stderr
    return dict(onp.load(out))


def assert_same_numbers(got, expected, rtol):
    for key in expected:
        if expected[key].dtype.kind == 'f':
            scale = max(onp.abs(expected[key]).max(), 1e-30)
            assert onp.abs(got[key] - expected[key]).max() <= rtol * scale, \
                key


def test_native_off_takes_mxnet_s_operators_with_the_same_numbers(
        tmp_path):
    """GLUON_FCN_NATIVE=0: no library loads, the chapter's layers and
    MXNet's loss run, and the numbers are the native path's."""
    fast = numbers(tmp_path, 'native')
    off = numbers(tmp_path, 'off', GLUON_FCN_NATIVE='0')
    assert fast['loaded'] and not off['loaded']
    assert (str(fast['type']), str(off['type'])) == (
        'QuadrantConv2DTranspose', 'Conv2DTranspose')
    assert_same_numbers(off, fast, 2e-4)  # BatchNorm amplifies rounding


def has_avx512_code(library):
    """Whether the compiled library uses the 512-bit registers."""
    code = subprocess.run(['objdump', '-d', '--no-show-raw-insn', library],
                          capture_output=True, text=True, check=True).stdout
    return '%zmm' in code


def test_the_generic_kernels_give_the_avx512_kernels_numbers(tmp_path):
    """`GLUON_FCN_CXXFLAGS=-mno-avx512f` builds the kernels other CPUs
    run (no `__AVX512F__`) on an AVX-512 machine, in a library of its
    own: they give the AVX-512 kernels' numbers."""
    if 'avx512f' not in native.cpu_flags().split():
        pytest.skip('this CPU has no AVX-512: its kernels are the generic')
    if shutil.which('objdump') is None:
        pytest.skip('no objdump (binutils) to tell the builds apart')
    generic_flags = dict(GLUON_FCN_CXXFLAGS='-mno-avx512f')
    proc = python('from gluon_fcn.fast import native; print(native.load(), '
                  'native.library_path())', **generic_flags)
    loaded, library = proc.stdout.split()
    assert loaded == 'True', proc.stderr
    assert library != native.library_path()
    assert has_avx512_code(native.library_path())
    assert not has_avx512_code(library)
    avx512 = numbers(tmp_path, 'avx512')
    generic = numbers(tmp_path, 'generic', **generic_flags)
    assert generic['loaded'] and str(generic['type']) == \
        'QuadrantConv2DTranspose'
    assert_same_numbers(generic, avx512, 1e-5)
