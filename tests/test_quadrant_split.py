"""The quadrant split of the upsamplers, inference fusion and threads."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, np
from mxnet.gluon import nn

from gluon_fcn.core.model import build_fcn
from gluon_fcn.fast import accelerate, native, optimize_for_inference
from gluon_fcn.threads import default_omp_threads, physical_cores
from gluon_fcn.fast.upsample import (QuadrantConv2DTranspose,
                                     is_quadrant_split, use_quadrant_split)

pytestmark = pytest.mark.numerical  # again under lower ISAs


def transposed_conv(channels, kernel, stride, pad, seed=0):
    """A Conv2DTranspose with random weights and bias."""
    layer = nn.Conv2DTranspose(channels, kernel, stride, pad,
                               in_channels=channels)
    layer.initialize()
    rng = onp.random.RandomState(seed)
    layer.weight.set_data(np.array(rng.randn(*layer.weight.shape),
                                   dtype='float32'))
    layer.bias.set_data(np.array(rng.randn(channels), dtype='float32'))
    return layer


def forward_backward(layer, X, seed=2):
    """Output and the gradients of x, weight and bias for a random head
    gradient."""
    X = X.copy()
    X.attach_grad()
    with autograd.record():
        out = layer(X)
    head = onp.random.RandomState(seed).randn(*out.shape)
    out.backward(np.array(head, dtype='float32'))
    return [a.asnumpy() for a in (out, X.grad, layer.weight.grad(),
                                  layer.bias.grad())]


@pytest.mark.parametrize('kernel,stride,pad', [
    (64, 32, 16), (4, 2, 1), (16, 8, 4), (32, 16, 8), (8, 4, 0),
    (8, 4, 3)])
@pytest.mark.parametrize('size', [(1, 1), (3, 5), (10, 15)])
@pytest.mark.parametrize('hybridize', [False, True])
def test_quadrant_split_equals_the_transposed_convolution(
        kernel, stride, pad, size, hybridize):
    """Outputs and gradients (input, weight, bias) to float32 rounding."""
    layer = transposed_conv(3, kernel, stride, pad)
    X = np.array(onp.random.RandomState(1).randn(2, 3, *size),
                 dtype='float32')
    expected = forward_backward(layer, X)
    net = nn.HybridSequential()
    net.add(layer)
    assert use_quadrant_split(net) == 1
    weight, layer = layer.weight, net[0]
    assert isinstance(layer, QuadrantConv2DTranspose)
    assert layer.weight is weight  # the same Parameter, not a copy
    if hybridize:
        layer.hybridize()
    got = forward_backward(layer, X)
    for name, g, e in zip(('output', 'x', 'weight', 'bias'), got, expected):
        assert g.shape == e.shape, name
        assert onp.abs(g - e).max() <= 1e-5 * onp.abs(e).max(), name


@pytest.mark.parametrize('kernel,stride,pad,grad_req', [
    (2, 1, 0, 'write'), (6, 3, 1, 'write'), (10, 5, 4, 'write'),
    (8, 4, 1, 'add')])
def test_the_gemm_path_equals_the_transposed_convolution(
        kernel, stride, pad, grad_req, monkeypatch):
    """Strides `fcn_upsample` has no kernel for, and gradients added to
    (grad_req 'add'), take the GEMM and `fcn_blocks_to_image`: output
    and gradients (input, weight, bias) against MXNet's own operator."""
    if not native.load():
        pytest.skip('the native operators do not build here')
    gemm = []
    plain = QuadrantConv2DTranspose.gemm_forward
    monkeypatch.setattr(QuadrantConv2DTranspose, 'gemm_forward',
                        lambda *a: gemm.append(1) or plain(*a))
    X = np.array(onp.random.RandomState(1).randn(2, 3, 7, 9),
                 dtype='float32')
    results = []
    for split in (False, True):
        layer = transposed_conv(3, kernel, stride, pad)
        layer.collect_params().setattr('grad_req', grad_req)
        if split:
            layer = QuadrantConv2DTranspose.from_layer(layer)
        results.append(forward_backward(layer, X))
    assert gemm == [1]
    for name, g, e in zip(('output', 'x', 'weight', 'bias'), *results[::-1]):
        assert g.shape == e.shape, name
        assert onp.abs(g - e).max() <= 1e-5 * onp.abs(e).max(), name


def test_only_kernels_twice_the_stride_are_switched():
    net = nn.HybridSequential()
    net.add(transposed_conv(2, 3, 1, 1), transposed_conv(2, 4, 2, 1),
            nn.Conv2D(2, 3), transposed_conv(2, 8, 4, 4))
    assert [is_quadrant_split(b) for b in net] == [False, True, False, False]
    assert use_quadrant_split(net) == 1
    assert type(net[0]) is nn.Conv2DTranspose


@pytest.mark.parametrize('head', ['32s', '16s', '8s'])
def test_optimized_net_equals_the_chapter_net(head, tmp_path):
    """Same outputs (to float32 rounding) at the optimised shape and at
    others; same parameter names and values, so checkpoints load either
    way."""
    mx.random.seed(0)
    plain = build_fcn(21, head=head)
    names = list(plain.collect_params().keys())
    plain.save_parameters(str(tmp_path / 'fcn.params'))
    fast = accelerate(build_fcn(21, head=head))
    fast.load_parameters(str(tmp_path / 'fcn.params'))
    fused = optimize_for_inference(fast, np.zeros((1, 3, 96, 128)))
    for shape in ((1, 3, 96, 128), (2, 3, 64, 32)):
        X = np.array(onp.random.RandomState(2).randn(*shape),
                     dtype='float32')
        expected = plain(X).asnumpy()
        gap = onp.abs(fused(X).asnumpy() - expected).max()
        assert gap <= 1e-5 * onp.abs(expected).max()
    fast_names = [n.replace(fast.prefix, plain.prefix, 1)
                  for n in fast.collect_params().keys()]
    assert len(fast_names) == len(names)
    fast.save_parameters(str(tmp_path / 'fast.params'))
    plain.load_parameters(str(tmp_path / 'fast.params'))
    assert onp.array_equal(plain(X).asnumpy(), expected)


def test_physical_cores_counts_cores_not_hyperthreads(tmp_path):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text(''.join(
        f'processor\t: {cpu}\nphysical id\t: 0\ncore id\t\t: {cpu % 2}\n\n'
        for cpu in range(4)))  # 4 logical CPUs, 2 cores
    allowed = len(__import__('os').sched_getaffinity(0))
    assert physical_cores(str(cpuinfo)) == min(2, allowed)
    assert physical_cores(str(tmp_path / 'missing')) == allowed


def test_cpuinfo_field_is_the_first_processors(tmp_path):
    from gluon_fcn.threads import cpuinfo_field
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text(
        'processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2\n\n'
        'processor\t: 1\nvendor_id\t: GenuineIntel\nflags\t\t: fpu\n')
    assert cpuinfo_field('vendor_id', str(cpuinfo)) == 'AuthenticAMD'
    assert cpuinfo_field('flags', str(cpuinfo)) == 'fpu avx2'
    assert cpuinfo_field('model name', str(cpuinfo)) == ''
    assert cpuinfo_field('flags', str(tmp_path / 'missing')) == ''


def test_default_omp_threads_leaves_the_users_setting(monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '7')
    assert default_omp_threads() == '7'
    monkeypatch.delenv('OMP_NUM_THREADS')
    monkeypatch.delenv('MXNET_OMP_MAX_THREADS', raising=False)
    assert default_omp_threads() == str(physical_cores())
