"""bf16 mixed-precision training (`gluon_fcn.fast.mixed`, `train
--precision bf16`, issue 22): the convolutions compute in bfloat16, the
Parameters, gradients, loss and upsamplers stay float32; a run resumes
bit-identical; a CPU that cannot run it is refused in one line, one that
runs it slower says so."""
import os

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, npx

from gluon_fcn.app.cli import main
from gluon_fcn.core.checkpoint import load_legacy
from gluon_fcn.core.model import build_fcn, score_layers
from gluon_fcn.fast import accelerate, cpu, make_fused_loss
from gluon_fcn.fast.mixed import (Bf16Conv2D,
                                  use_bf16_convolutions,
                                  use_float32_convolutions)
from gluon_fcn.fast.precision import dtype_name
from gluon_fcn.fast.upsample import find_layers
from gluon_fcn.fast.train import train_fcn

INTEL_NO_AMX = 'GenuineIntel avx512f avx512bw avx512_vnni avx512_bf16'
INTEL_AMX = INTEL_NO_AMX + ' amx_tile amx_bf16 amx_int8'
AMD_BF16 = 'AuthenticAMD avx512f avx512bw avx512_vnni avx512_bf16'
NO_BF16 = 'GenuineIntel avx2 fma'
SHAPE = (2, 3, 64, 96)
# bfloat16 keeps 8 bits of mantissa: each convolution's inputs are
# rounded to 2**-8 relative (0.4%), and a loss over the net's 20 or so
# convolutions moves by about that much, not by an order more. A net
# still in float32 would match exactly; one broken (a wrong cast, a
# dropped bias) would be off by far more than these bounds.
LOSS_RTOL = 0.02


def bf16_or_skip():
    if cpu.precision_units('bf16') is None or not cpu.onednn():
        pytest.skip('this CPU has no bf16 units (amx_bf16, avx512_bf16)')


def set_mode(mode):
    (npx.set_np if mode == 'numpy' else npx.reset_np)()


def steps(net, X, y, n=3):
    """`n` SGD steps on one batch: the losses, then the gradient of the
    first step (the same weights in both nets) of a backbone
    convolution's weight (NumPy)."""
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.1, 'wd': 1e-3})
    weight = [p for p in net.collect_params().values()
              if p.name.endswith('weight') and len(p.shape) == 4][1]
    loss, losses, grad = make_fused_loss('d2l'), [], None
    for _ in range(n):
        with autograd.record():
            ell = loss(net(X), y)
        ell.backward()
        grad = weight.grad().asnumpy() if grad is None else grad
        trainer.step(X.shape[0])
        losses.append(float(ell.mean().asnumpy()))
    return losses, grad


def batch():
    rng = onp.random.RandomState(0)
    X = rng.uniform(size=SHAPE).astype('float32')
    y = rng.randint(0, 21, size=SHAPE[:1] + SHAPE[2:]).astype('float32')
    return (mx.np.array(X), mx.np.array(y)) if mx.util.is_np_array() \
        else (mx.nd.array(X), mx.nd.array(y))


def twin_nets(head, chapter):
    """The same FCN twice (same weights): float32, and bf16 mixed."""
    nets = []
    for bf16 in (False, True):
        mx.random.seed(0)
        net = build_fcn(21, head=head)
        if not chapter:
            accelerate(net)
        if bf16:
            assert use_bf16_convolutions(net) > 0
        net.hybridize()
        nets.append(net)
    return nets


@pytest.mark.parametrize('mode', ['numpy', 'legacy'])
@pytest.mark.parametrize('head,chapter', [('32s', False), ('32s', True),
                                          ('8s', False)])
def test_bf16_training_follows_float32_with_float32_weights(mode, head,
                                                            chapter):
    bf16_or_skip()
    set_mode(mode)
    fp32, bf16 = twin_nets(head, chapter)
    X, y = batch()
    want_losses, want_grad = steps(fp32, X, y)
    losses, grad = steps(bf16, X, y)
    assert losses == pytest.approx(want_losses, rel=LOSS_RTOL)
    assert losses != want_losses  # it did not run in float32
    assert losses[-1] < losses[0]  # it trains
    # the gradients point the same way as float32's (at initialisation,
    # BatchNorm over batch 2 of small maps magnifies rounding: MXNet AMP's
    # own recipe is as far off, `test_the_gradients_are_amps_recipes`)
    assert cosine(grad, want_grad) > 0.8
    out = bf16(X)
    assert type(out) is type(X) and dtype_name(out.dtype) == 'float32'
    params = bf16.collect_params().values()
    assert {dtype_name(p.dtype) for p in params} == {'float32'}
    assert {dtype_name(p.grad().dtype) for p in params
            if p.grad_req != 'null'} == {'float32'}


def cosine(a, b):
    return float((a * b).sum() / onp.linalg.norm(a) / onp.linalg.norm(b))


# MXNet AMP's bf16 recipe (`benchmarks/bf16_training_repro.py`: amp.init
# after the native operators load, the upsampler's input cast to
# float32), and `use_bf16_convolutions`: one step's loss and gradients.
# In a child process, since amp.init changes MXNet for the whole process.
AMP_PARITY = """
import json, mxnet as mx, numpy as onp
from mxnet import autograd
from gluon_fcn.core.arrays import as_legacy, like
from gluon_fcn.core.model import build_fcn
from gluon_fcn.core.mxnet_internals import child_blocks
from gluon_fcn.fast import accelerate, make_fused_loss, native
from gluon_fcn.fast.mixed import use_bf16_convolutions
from gluon_fcn.fast.upsample import QuadrantConv2DTranspose

class Float32Quadrants(QuadrantConv2DTranspose):
    def hybrid_forward(self, F, x, weight, bias):
        x = like(F.amp_cast(as_legacy(x), dtype='float32'), x)
        return super().hybrid_forward(F, x, weight, bias)

rng = onp.random.RandomState(0)
X = mx.nd.array(rng.uniform(size=(2, 3, 64, 96)).astype('float32'))
y = mx.nd.array(rng.randint(0, 21, size=(2, 64, 96)).astype('float32'))

def step(recipe):
    mx.random.seed(0)
    net = build_fcn(21)
    if recipe == 'amp':
        net.register_child(Float32Quadrants.from_layer(net[-1]),
                           list(child_blocks(net))[-1])
    else:
        use_bf16_convolutions(accelerate(net))
    net.hybridize()
    with autograd.record():
        ell = make_fused_loss('d2l')(net(X), y)
    ell.backward()
    return float(ell.mean().asscalar()), [
        p.grad().asnumpy() for p in net.collect_params().values()
        if p.grad_req != 'null']

native.load()
ours = step('ours')
from mxnet.contrib import amp
amp.init(target_dtype='bfloat16')
theirs = step('amp')
print(json.dumps({'losses': [ours[0], theirs[0]],
                  'counts': [len(ours[1]), len(theirs[1])], 'grad_gaps': [
    float(onp.abs(a - b).max()) for a, b in zip(ours[1], theirs[1])]}))
"""


def test_the_gradients_are_amps_recipes():
    """Written as layers, the bf16 convolutions compute what MXNet AMP's
    bf16 training computes on the chapter's net: the same loss and
    gradients, exactly."""
    bf16_or_skip()
    import json
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    child = subprocess.run([sys.executable, '-c', AMP_PARITY], env=env,
                           capture_output=True, text=True, check=True)
    found = json.loads(child.stdout.strip().splitlines()[-1])
    ours, amps = found['losses']
    assert ours == amps
    count, amp_count = found['counts']
    assert count == amp_count == len(found['grad_gaps'])
    assert max(found['grad_gaps']) == 0


def test_backbone_convolutions_compute_in_bf16_scores_in_float32():
    bf16_or_skip()
    mx.random.seed(0)
    net = build_fcn(21, head='16s')
    use_bf16_convolutions(net)
    convs = [b for _, _, b in find_layers(
        net, lambda b: isinstance(b, Bf16Conv2D))]
    scores = score_layers(net)
    assert {id(c) for c in convs if c.float32_out} == {id(s) for s in scores}
    first = net.stage8[1]
    assert isinstance(first, Bf16Conv2D)
    X = mx.np.ones((1, 3, 32, 32))
    assert dtype_name(first(net.stage8[0](X)).dtype) == 'bfloat16'
    assert all(dtype_name(s(mx.np.ones((1, s.weight.shape[1], 2, 2))).dtype)
               == 'float32' for s in scores)


def test_float32_convolutions_undo_the_bf16_ones_exactly():
    """After bf16 training the run's final passes (whole-image metrics,
    the figure) are float32 ones, as `evaluate --run` makes them."""
    bf16_or_skip()
    X, _ = batch()
    mx.random.seed(0)
    want = build_fcn(21)(X).asnumpy()
    mx.random.seed(0)
    mixed = build_fcn(21)  # the same weights
    use_bf16_convolutions(mixed)
    assert not onp.array_equal(mixed(X).asnumpy(), want)
    assert use_float32_convolutions(mixed) > 0
    onp.testing.assert_array_equal(mixed(X).asnumpy(), want)


def test_train_fcn_takes_bf16(synth_voc):
    bf16_or_skip()
    from gluon_fcn.d2l import load_data_voc
    import warnings
    from gluon_fcn.fast.cpu import bf16_training_slower
    from gluon_fcn.fast.precision import PrecisionNote
    train_iter, test_iter = load_data_voc(4, (64, 96), synth_voc)
    net = build_fcn(21)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', PrecisionNote)
        history = train_fcn(net, train_iter, test_iter, 1,
                            precision='bf16', progress=False)
    slower = bf16_training_slower()  # everywhere but AMX
    notes = [w for w in caught if w.category is PrecisionNote]
    assert [str(w.message) for w in notes] == (
        [f'{slower}; training in bf16 as asked'] if slower else [])
    assert all(w.filename == __file__ for w in notes)  # the caller's line
    assert onp.isfinite(history.epochs[-1]['loss'])
    assert find_layers(net, lambda b: isinstance(b, Bf16Conv2D))


SMALL = ['--crop', '96,128', '--batch-size', '4', '--seed', '0']


def params_of(run_dir):
    return load_legacy(os.path.join(run_dir, 'fcn.params'))


def test_bf16_run_resumes_bit_identical_and_says_how_it_trained(
        synth_voc, tmp_path, capsys):
    bf16_or_skip()
    whole, resumed = str(tmp_path / 'whole'), str(tmp_path / 'resumed')
    common = ['train', '--data', synth_voc, '--precision', 'bf16'] + SMALL
    assert main(common + ['--out', whole, '--epochs', '2']) == 0
    out = capsys.readouterr().out
    assert f'training in bf16 on {cpu.cpu_path("bf16")}' in out
    assert main(common + ['--out', resumed, '--epochs', '1']) == 0
    assert main(common + ['--out', resumed, '--epochs', '2',
                          '--resume']) == 0
    a, b = params_of(whole), params_of(resumed)
    assert a.keys() == b.keys()
    assert {dtype_name(v.dtype) for v in a.values()} == {'float32'}
    for k in a:
        onp.testing.assert_array_equal(a[k].asnumpy(), b[k].asnumpy(),
                                       err_msg=k)
    with open(os.path.join(whole, 'config.json')) as f:
        assert '"precision": "bf16"' in f.read()
    # the bf16 run predicts like any run, in float32 by default
    image = os.path.join(synth_voc, 'JPEGImages', sorted(
        os.listdir(os.path.join(synth_voc, 'JPEGImages')))[0])
    assert main(['predict', '--run', whole, '--out', str(tmp_path / 'p'),
                 image]) == 0
    assert 'predicting in fp32' in capsys.readouterr().out


def test_bf16_training_notes_where_it_is_known_slower(
        synth_voc, tmp_path, monkeypatch, capsys):
    bf16_or_skip()
    monkeypatch.setenv(cpu.FAKE_VAR, INTEL_NO_AMX)
    assert main(['train', '--data', synth_voc, '--precision', 'bf16',
                 '--epochs', '1', '--out', str(tmp_path / 'run')]
                + SMALL) == 0
    notes = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith('gluon-fcn: note:')]
    assert notes == ['gluon-fcn: note: bf16 training is slower than fp32 '
                     'on this CPU (no AMX); training in bf16 as asked']


@pytest.mark.parametrize('flags,note', [
    (INTEL_NO_AMX, 'bf16 training is slower than fp32 on this CPU (no '
                   'AMX); training in bf16 as asked'),
    (AMD_BF16, 'bf16 training is slower than fp32 on this CPU (no AMX); '
               'training in bf16 as asked'),
    (INTEL_AMX, None)])
def test_bf16_training_is_slower_everywhere_but_amx(monkeypatch, flags,
                                                    note):
    """The AMD EPYC's AVX-512 BF16 runs bf16 inference faster than fp32,
    and bf16 training slower (README, results log): only AMX gets no
    note."""
    import warnings
    from gluon_fcn.fast.mixed import training_refusal
    from gluon_fcn.fast.precision import PrecisionNote
    if not cpu.onednn():
        pytest.skip('this MXNet has no oneDNN (MKLDNN)')
    monkeypatch.setenv(cpu.FAKE_VAR, flags)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', PrecisionNote)
        assert training_refusal('bf16', [mx.cpu()]) is None
    assert [str(w.message) for w in caught] == ([note] if note else [])


def test_bf16_training_is_refused_in_one_line_saying_why(
        monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(cpu.FAKE_VAR, NO_BF16)
    out = tmp_path / 'run'
    assert main(['train', '--precision', 'bf16', '--out', str(out),
                 '--data-dir', str(tmp_path / 'data')]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ['gluon-fcn: error: --precision bf16: this CPU has none '
                   'of amx_bf16 or avx512_bf16; train in fp32']
    assert not out.exists()  # refused before anything is written


def test_bf16_training_refuses_gpus_and_unknown_precisions():
    from gluon_fcn.fast.mixed import training_refusal
    assert training_refusal('bf16', [mx.cpu(), mx.gpu(1)]) == \
        'bf16 training runs on the CPU only, not gpu(1)'
    assert training_refusal('fp16', [mx.cpu()]).startswith(
        "unknown training precision 'fp16'")
    assert training_refusal('fp32', [mx.gpu(0)]) is None
