"""bf16 and int8 inference (issue 14): the AMX permission, the CPU's
units, the fallbacks to float32, and agreement with float32 on a run that
has learned something."""
import json
import logging
import os
import platform
import re
import shutil
import sys
import warnings

import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

from cli_output import without_synthetic_note
from gluon_fcn import threads
from gluon_fcn.app import choices, loading
from gluon_fcn.app.cli import main
from gluon_fcn.app.exporting import export_net
from gluon_fcn.core.checkpoint import load_legacy, save_legacy
from gluon_fcn.core.dataset import read_split
from gluon_fcn.core.evaluate import read_label
from gluon_fcn.core.metrics import ConfusionMatrix
from gluon_fcn.core.model import build_fcn
from gluon_fcn.core.arrays import array, zeros
from gluon_fcn.errors import FCNError
from gluon_fcn.fast import (InferenceFCN, PrecisionNote, auto, cpu,
                            layer_precisions, optimize_for_inference,
                            precision)
from gluon_fcn.fast.portable import load_mxnet

# pixels whose class may change against float32 on the run below: 0.3%
# (bf16) and 0.6% (int8) were measured (Xeon with AMX); the floor
# is 1%
BOUND = {'bf16': 0.0075, 'int8': 0.01}
REDUCED = {'bf16': {'bfloat16'}, 'int8': {'int8', 'uint8'}}


@pytest.fixture(scope='module')
def run(synth_voc, tmp_path_factory):
    """A chapter run trained 3 epochs on 24 small synthetic images."""
    out = str(tmp_path_factory.mktemp('precision') / 'run')
    assert main(['train', '--data', synth_voc, '--out', out, '--epochs',
                 '3', '--crop', '64,96', '--batch-size', '4', '--seed', '0',
                 '--labels', 'voc']) == 0
    return out


def background_only(voc_dir):
    """The whole-image figures of calling every val pixel background."""
    total = ConfusionMatrix(21)
    for name in read_split(voc_dir, 'val'):
        label = read_label(voc_dir, name)
        total.update(onp.zeros_like(label), label)
    return total.compute()


def units_or_skip(name):
    if cpu.precision_units(name) is None:
        pytest.skip(f'this CPU has no units for {name}')


def test_amx_request_is_a_no_op_with_one_debug_line_where_refused(
        monkeypatch, caplog):
    monkeypatch.delenv(threads.ISA_VAR, raising=False)
    caplog.set_level(logging.DEBUG, logger=threads.__name__)
    assert threads.enable_amx(request=lambda: False) is None
    assert threads.ISA_VAR not in os.environ
    assert len(caplog.records) == 1
    assert caplog.records[0].levelno == logging.DEBUG
    assert 'AMX' in caplog.records[0].getMessage()
    # an AMX cap inherited without the permission would crash oneDNN
    monkeypatch.setenv(threads.ISA_VAR, threads.AMX_ISA)
    assert threads.enable_amx(request=lambda: False) is None
    assert threads.ISA_VAR not in os.environ


def test_amx_isa_is_raised_only_once_granted_and_a_users_cap_kept(
        monkeypatch):
    monkeypatch.delenv(threads.ISA_VAR, raising=False)
    assert threads.enable_amx(request=lambda: True) == threads.AMX_ISA
    assert os.environ[threads.ISA_VAR] == threads.AMX_ISA
    monkeypatch.setenv(threads.ISA_VAR, 'AVX2')
    asked = []
    assert threads.enable_amx(request=lambda: asked.append(1)) == 'AVX2'
    assert not asked and os.environ[threads.ISA_VAR] == 'AVX2'


def test_amx_permission_is_granted_exactly_where_linux_can_grant_it():
    """Granted on x86-64 Linux 5.16 on, on a CPU with AMX tiles; refused
    elsewhere (asking again is harmless)."""
    release = tuple(int(n) for n in re.findall(r'\d+',
                                               platform.release())[:2])
    can = (sys.platform == 'linux' and platform.machine() == 'x86_64' and
           release >= (5, 16) and 'amx_tile' in cpu.cpu_flags().split())
    assert threads.request_amx_permission() is can


@pytest.mark.parametrize('flags,amx,fp32,bf16,int8', [
    ('', False, 'scalar float32', None, None),
    ('sse2', False, 'SSE2', None, None),
    ('sse2 avx2 fma', True, 'AVX2', None, None),
    ('avx2 avx512f avx512bw', False, 'AVX-512', None, 'AVX-512'),
    ('avx512f avx512bw avx512_vnni avx512_bf16', False, 'AVX-512',
     'AVX-512 BF16', 'AVX-512 VNNI'),
    ('avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_int8', False,
     'AVX-512', 'AVX-512 BF16', 'AVX-512 VNNI'),  # AMX refused by Linux
    ('avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_int8', True,
     'AVX-512', 'AMX', 'AMX')])
def test_precision_units_follow_the_cpu_flags(flags, amx, fp32, bf16,
                                               int8):
    here = cpu.CPU('GenuineIntel', frozenset(flags.split()), amx)
    assert cpu.precision_units('fp32', here) == fp32  # the widest vectors
    assert cpu.precision_units('bf16', here) == bf16
    assert cpu.precision_units('int8', here) == int8


def test_a_precision_the_cpu_lacks_is_one_note_and_fp32(monkeypatch):
    monkeypatch.setenv(cpu.FAKE_VAR, 'GenuineIntel avx2 fma')
    X = np.random.uniform(size=(1, 3, 64, 64))
    net = build_fcn(21)
    expected = net(X).asnumpy()
    with pytest.warns(PrecisionNote) as notes:
        net = optimize_for_inference(net, X, precision='bf16')
    notes = [w for w in notes if w.category is PrecisionNote]
    assert len(notes) == 1
    message = str(notes[0].message)
    assert '\n' not in message and 'running float32' in message
    assert 'avx512_bf16' in message
    assert isinstance(net, InferenceFCN) and net.precision == 'fp32'
    assert {p for _, p in layer_precisions(net)} == {'float32'}
    assert onp.abs(net(X).asnumpy() - expected).max() < 1e-4


def test_skip_heads_and_gpus_fall_back_and_unknown_names_are_errors():
    X = np.zeros((1, 3, 64, 64))
    with pytest.warns(PrecisionNote, match="chapter's 32s net"):
        net = optimize_for_inference(build_fcn(21, head='16s'), X,
                                     precision='int8')
    assert not isinstance(net, InferenceFCN)
    with pytest.warns(PrecisionNote, match='CPU only'):
        assert precision.usable_precision('bf16', mx.gpu(0)) == 'fp32'
    with pytest.raises(FCNError, match="unknown precision 'fp16'"):
        precision.usable_precision('fp16')
    with pytest.raises(FCNError, match='calibration images'):
        precision.inference_net(build_fcn(21), X, 'int8')


@pytest.mark.parametrize('name', ['bf16', 'int8'])
def test_reduced_precision_agrees_with_fp32_on_a_trained_run(
        run, synth_voc, name, tmp_path, capsys):
    units_or_skip(name)
    path = tmp_path / 'eval.json'
    assert main(['evaluate', '--run', run, '--data', synth_voc,
                 '--precision', name, '--json', str(path)]) == 0
    assert f'{name} against fp32: ' in capsys.readouterr().out
    metrics = json.load(open(path))
    assert metrics['precision'] == name
    against = metrics['against_reference']
    reference = against['reference']
    baseline = background_only(synth_voc)  # the run has learned
    assert reference['pixel_acc'] > baseline['pixel_acc']
    assert reference['mean_iou'] > baseline['mean_iou'] + 0.1
    assert against['changed_pixels'] <= BOUND[name]
    assert abs(against['pixel_acc_delta']) <= BOUND[name]
    assert abs(against['mean_iou_delta']) <= 0.05
    net, _ = loading.load_run(run, precision=name)
    layers = layer_precisions(net)
    assert len(layers) == 22  # resnet18's 20, the score conv, the head
    assert {p for _, p in layers[:-1]} <= REDUCED[name]
    assert layers[-1][1] == 'float32'  # the upsampler


@pytest.mark.parametrize('bar,fused', [(0.0, True), (1.01, False)])
def test_int8_fuses_its_residual_sums_only_where_the_classes_stay(
        monkeypatch, bar, fused):
    """int8 with the sums fused where the calibration images keep their
    classes (`INT8_AGREEMENT`), else with the sums apart, in float32."""
    units_or_skip('int8')
    monkeypatch.setattr(precision, 'INT8_AGREEMENT', bar)
    X = zeros((2, 3, 64, 96))
    calib = onp.random.RandomState(0).uniform(-2, 2, (3, 3, 64, 96))
    net = precision.inference_net(build_fcn(21), X, 'int8',
                                  calib.astype('float32'))
    assert precision.sums_fused(net) == fused
    assert net(X).shape == (2, 21, 64, 96)


def test_int8_is_calibrated_once_and_kept_beside_the_run(run, monkeypatch):
    units_or_skip('int8')
    X = zeros((2, 3, 64, 96))
    X[:] = np.random.uniform(-2, 2, size=X.shape)
    first = loading.load_run(run, precision='int8')[0](X).asnumpy()
    files = sorted(os.listdir(os.path.join(run, 'int8')))
    assert [f.split('-', 2)[-1] for f in files] == ['0000.params',
                                                     'symbol.json']

    def no_data(config):
        raise AssertionError('calibrated again')
    monkeypatch.setattr(loading, 'calibration_images', no_data)
    again = loading.load_run(run, precision='int8')[0](X).asnumpy()
    assert onp.array_equal(first, again)


def test_int8_is_calibrated_again_once_fcn_params_change(run, tmp_path,
                                                        monkeypatch):
    """The kept int8 net is named after fcn.params: new parameters (the
    last layer's negated, so the logits are too) are calibrated again, the
    old net removed, and the new one predicts with the new parameters."""
    units_or_skip('int8')
    copy = str(tmp_path / 'run')
    shutil.copytree(run, copy)
    X = zeros((2, 3, 64, 96))
    X[:] = np.random.uniform(-2, 2, size=X.shape)
    first = loading.load_run(copy, precision='int8')[0](X).asnumpy()
    old = set(os.listdir(os.path.join(copy, 'int8')))
    params = os.path.join(copy, 'fcn.params')
    arrays = load_legacy(params)
    last = max(int(k.split('.')[0]) for k in arrays)  # the upsampler
    os.remove(params)  # it may be a link to the last checkpoint
    save_legacy(params, {k: -v if k.startswith(f'{last}.') else v
                         for k, v in arrays.items()})
    calibrated = []
    images = loading.calibration_images
    monkeypatch.setattr(loading, 'calibration_images',
                        lambda config: calibrated.append(1) or
                        images(config))
    again = loading.load_run(copy, precision='int8')[0](X).asnumpy()
    new = set(os.listdir(os.path.join(copy, 'int8')))
    assert calibrated == [1] and len(new) == 2 and not new & old
    onp.testing.assert_allclose(again, -first, rtol=1e-5, atol=1e-5)


def test_predict_takes_a_precision(run, synth_voc, tmp_path):
    units_or_skip('bf16')
    image = os.path.join(synth_voc, 'JPEGImages',
                         read_split(synth_voc, 'val')[0] + '.jpg')
    out = tmp_path / 'masks'
    assert main(['predict', '--run', run, '--out', str(out), '--precision',
                 'bf16', image]) == 0
    assert (out / (os.path.basename(image)[:-4] + '.png')).exists()


def test_cli_notes_a_precision_the_cpu_lacks(run, synth_voc, monkeypatch,
                                             capsys):
    monkeypatch.setenv(cpu.FAKE_VAR, 'GenuineIntel avx2 fma')
    assert main(['evaluate', '--run', run, '--data', synth_voc,
                 '--precision', 'int8']) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines()
             if line.startswith('gluon-fcn: ') and 'synthetic' not in line]
    assert notes == ['gluon-fcn: note: int8 inference: this CPU has none '
                     'of amx_int8 or avx512_vnni or avx_vnni or avx512bw; '
                     'running float32']
    assert 'int8 against' not in captured.out
    assert 'labels, fp32 on AVX2, ' in captured.out  # the faked CPU's


def test_inference_net_works_in_legacy_mode(legacy_mode):
    units_or_skip('bf16')
    X = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    net = optimize_for_inference(build_fcn(21), X, precision='bf16')
    y = net(X)
    assert isinstance(y, mx.nd.NDArray) and y.dtype == onp.float32
    assert y.shape == (1, 21, 64, 64)


@pytest.mark.parametrize('stride,hw,channels', [
    (32, (3, 4), 21), (16, (2, 5), 3), (8, (4, 3), 5), (2, (5, 7), 2)])
def test_fused_upsampler_equals_the_chapter_layer(stride, hw, channels):
    """`fcn_upsample` (the head of every inference net, and the upsampler
    `accelerate` trains) computes the chapter's transposed convolution,
    borders included, and its gradients with respect to the input, the
    weight and the bias; with grad_req 'add', the GEMM path adds them up
    over two backward passes."""
    from mxnet import autograd
    from gluon_fcn.core.model import make_upsampler
    from gluon_fcn.fast import native
    from gluon_fcn.fast.upsample import QuadrantConv2DTranspose, for_inference
    if not native.load():
        pytest.skip('no native operators here')
    rng = onp.random.RandomState(0)
    layer = make_upsampler(channels, stride, mx.cpu())
    layer.weight.set_data(np.array(rng.randn(*layer.weight.shape),
                                   dtype='float32'))
    layer.bias.set_data(np.array(rng.randn(channels), dtype='float32'))
    X = np.array(rng.randn(2, channels, *hw), dtype='float32')
    dY = None

    def outputs_and_gradients(block, passes=1):
        nonlocal dY
        x = X.copy()
        x.attach_grad()
        for _ in range(passes):
            with autograd.record():
                y = block(x)
            dY = np.array(rng.randn(*y.shape), dtype='float32') \
                if dY is None else dY
            y.backward(dY)
        return [v.asnumpy() for v in (y, x.grad, block.weight.grad(),
                                      block.bias.grad())]

    expected = outputs_and_gradients(layer)
    fused = for_inference(layer)
    assert isinstance(fused, QuadrantConv2DTranspose)
    fused.hybridize(static_alloc=True)
    for got, want, name in zip(outputs_and_gradients(fused), expected,
                               ('output', 'dx', 'dweight', 'dbias')):
        assert got.shape == want.shape
        assert onp.abs(got - want).max() <= 2e-5 * onp.abs(want).max(), name
    for param in layer.collect_params().values():
        param.grad_req = 'add'  # before the block that adds is traced
    adding = for_inference(layer)
    adding.hybridize(static_alloc=True)
    twice = outputs_and_gradients(adding, passes=2)
    for got, want, name in zip(twice[2:], expected[2:], ('dweight', 'dbias')):
        assert onp.abs(got - 2 * want).max() <= 4e-5 * onp.abs(want).max(), \
            name


@pytest.fixture(params=['numpy', 'legacy'])
def mode(request):
    """Runs a test in MXNet's NumPy mode, then with it off (`mxnet_mode`
    restores the mode after)."""
    if request.param == 'legacy':
        mx.npx.reset_np()
    return request.param


def seeded_fcn():
    mx.random.seed(0)
    return build_fcn(21)


# ten images: more than a calibration batch (8) and than an X batch (4)
CALIB = onp.random.RandomState(0).uniform(
    -2, 2, (10, 3, 64, 96)).astype('float32')
CALIB_TYPES = {'numpy': lambda a: a, 'NDArray': mx.nd.array,
               'mxnet.numpy': mx.np.array,
               'callable': lambda a: (lambda: mx.nd.array(a))}


NUMPY_CALIBRATED = {}  # mode: the int8 output from NumPy images, once


@pytest.mark.parametrize('kind', list(CALIB_TYPES))
def test_int8_calibrates_alike_on_any_array_type_in_either_mode(mode, kind):
    units_or_skip('int8')
    X = array(CALIB[2:6][:, :, ::-1])  # like the images, unseen

    def int8_output(calib_data):
        net = optimize_for_inference(seeded_fcn(), X, precision='int8',
                                     calib_data=calib_data)
        assert {p for _, p in layer_precisions(net)[:-1]} <= \
            REDUCED['int8']
        return net(X)

    y = int8_output(CALIB_TYPES[kind](CALIB))
    assert isinstance(y, mx.np.ndarray if mode == 'numpy'
                      else mx.nd.NDArray)
    assert y.shape == (4, 21, 64, 96)
    if mode not in NUMPY_CALIBRATED:
        NUMPY_CALIBRATED[mode] = int8_output(CALIB).asnumpy()
    # the same scales, so the same logits, as from the NumPy images
    assert onp.array_equal(y.asnumpy(), NUMPY_CALIBRATED[mode])


class Channels(mx.gluon.Block):
    """(B, 3, H, W) -> the same, channels 1 and 2 swapped with `swap`:
    the class (argmax) of each pixel where channel 0 is not the largest
    changes."""

    def __init__(self, swap):
        super().__init__()
        self.order = [0, 2, 1] if swap else [0, 1, 2]

    def forward(self, x):
        return array(x.asnumpy()[:, self.order])


def test_classes_kept_counts_each_image_once_over_filled_batches(mode):
    """7 images in batches of 3 (the last filled with the first images):
    the share counts the 3 whose class does not change, once each."""
    images = onp.zeros((7, 3, 4, 5), 'float32')
    images[:, 1], images[:, 2] = 2, 1  # channel 1 wins: swap changes it
    images[:3, 0] = 5  # channel 0 wins in the first three
    X = zeros((3, 3, 4, 5))
    kept = precision.classes_kept(Channels(True), Channels(False), images,
                                  X)
    assert kept == pytest.approx(3 / 7)


@pytest.mark.parametrize('calib_data,says', [
    (onp.zeros((2, 64, 96, 3)), 'expected (N, 3, H, W) images, got shape '
                                '(2, 64, 96, 3)'),
    (lambda: onp.zeros((3, 64, 96)), 'got shape (3, 64, 96)'),
    (['a.jpg'], 'calib_data: not an array of images')])
def test_unfit_calibration_images_are_one_line_errors(calib_data, says):
    with pytest.raises(FCNError) as error:
        precision.inference_net(build_fcn(21), zeros((1, 3, 64, 96)),
                                'int8', calib_data)
    assert says in str(error.value) and '\n' not in str(error.value)


# CPUs faked through GLUON_FCN_CPU for the paths this one cannot take
INTEL_AMX = ('GenuineIntel avx512f avx512bw avx512_vnni avx512_bf16 '
             'amx_tile amx_bf16 amx_int8')
INTEL_NO_AMX = 'GenuineIntel avx512f avx512bw avx512_vnni avx512_bf16'
AMD_BF16 = 'AuthenticAMD avx512f avx512bw avx512_vnni avx512_bf16'
NO_BF16_NO_VNNI = 'GenuineIntel avx2 fma'


@pytest.mark.parametrize('flags,amx,slower', [
    (INTEL_AMX, True, None),
    (INTEL_AMX, False, 'bf16 is slower than fp32 on this CPU (AMX not '
                       'granted by Linux)'),
    (INTEL_NO_AMX, False, 'bf16 is slower than fp32 on this CPU (no AMX)'),
    (AMD_BF16, False, None),
    (NO_BF16_NO_VNNI, False, None)])  # no bf16 at all: fp32, another note
def test_bf16_is_known_slower_on_intel_avx512_bf16_without_amx(
        flags, amx, slower):
    vendor, *rest = flags.split()
    here = cpu.CPU(vendor, frozenset(rest), amx)
    assert cpu.slower_than_fp32('bf16', here) == slower
    assert cpu.slower_than_fp32('int8', here) is None


def test_the_fake_cpu_names_vendor_flags_and_a_granted_amx(monkeypatch):
    monkeypatch.setenv(cpu.FAKE_VAR, 'avx512f amx_bf16')
    assert cpu.this_cpu() == cpu.CPU('GenuineIntel',
                                     frozenset({'avx512f', 'amx_bf16'}),
                                     True)
    assert cpu.precision_units('bf16') == 'AMX'
    assert cpu.precision_units('int8') is None
    assert "faked as 'avx512f amx_bf16'" in cpu.cpu_path('bf16')
    monkeypatch.setenv(cpu.FAKE_VAR, AMD_BF16)
    assert cpu.this_cpu().vendor == 'AuthenticAMD'
    assert cpu.cpu_path('int8').startswith('AVX-512 VNNI, ')


@pytest.mark.parametrize('flags,note', [
    (INTEL_NO_AMX, "bf16 is slower than fp32 on this CPU (no AMX); running "
                   "bf16 as asked ('auto' picks the fastest)"),
    (INTEL_AMX, None), (AMD_BF16, None)])
def test_bf16_runs_as_asked_with_one_note_where_it_is_slower(
        monkeypatch, flags, note):
    """The choice for bf16 on a CPU where it runs slower than fp32: keep
    bf16 (its numbers are what was asked for) and say so in one line."""
    units_or_skip('bf16')  # this CPU's: the kernels are its own
    monkeypatch.setenv(cpu.FAKE_VAR, flags)
    X = np.random.uniform(size=(1, 3, 64, 64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        net = optimize_for_inference(build_fcn(21), X, precision='bf16')
    notes = [str(w.message) for w in caught
             if w.category is PrecisionNote]
    assert notes == ([note] if note else [])
    assert net.precision == 'bf16'
    assert {p for _, p in layer_precisions(net)[:-1]} == {'bfloat16'}


def test_predict_says_the_precision_and_cpu_path_and_notes_a_slow_one(
        run, synth_voc, tmp_path, monkeypatch, capsys):
    units_or_skip('bf16')
    monkeypatch.setenv(cpu.FAKE_VAR, INTEL_NO_AMX)
    image = os.path.join(synth_voc, 'JPEGImages',
                         read_split(synth_voc, 'val')[0] + '.jpg')
    for name, path in (('fp32', 'AVX-512'), ('bf16', 'AVX-512 BF16')):
        assert main(['predict', '--run', run, '--out', str(tmp_path),
                     '--precision', name, image]) == 0
        captured = capsys.readouterr()
        assert captured.out.startswith(f'predicting in {name} on {path}, ')
        notes = without_synthetic_note(captured.err.splitlines())
        assert len(notes) == (name == 'bf16')
        assert all(n.startswith('gluon-fcn: note: bf16 is slower than '
                                'fp32 on this CPU (no AMX)') for n in notes)


def copy_of_run(run, folder):
    """A run folder with the trained net only: no auto.json, no int8/."""
    os.makedirs(folder)
    for name in ('config.json', 'fcn.params'):
        shutil.copy(os.path.join(run, name), folder)
    return str(folder)


def fixed_rates(rates):
    """`auto.images_per_second` replaced: the same rates every time, so
    that the choice depends on the agreement only."""
    def measure(nets, images, X):
        return {p: rates[p] for p in nets}
    return measure


@pytest.mark.parametrize('agreement', [0.0, 1.01])
def test_auto_takes_the_fastest_precision_that_keeps_the_classes(
        mode, monkeypatch, agreement):
    units_or_skip('int8')
    units_or_skip('bf16')
    rates = {'fp32': 1.0, 'bf16': 2.0, 'int8': 3.0}
    monkeypatch.setattr(auto, 'images_per_second', fixed_rates(rates))
    monkeypatch.setattr(auto, 'AGREEMENT', agreement)
    X = array(CALIB[:2])
    net = optimize_for_inference(seeded_fcn(), X, precision='auto',
                                 calib_data=CALIB_TYPES['NDArray'](CALIB))
    choice = net.choice
    assert choice.kept['fp32'] == 1.0
    assert all(0 < k <= 1 for k in choice.kept.values())
    # none keeps more than all the pixels; fp32, the reference, counts
    assert net.precision == choice.precision == \
        ('int8' if agreement == 0 else 'fp32')
    assert isinstance(net(X), mx.np.ndarray if mode == 'numpy'
                      else mx.nd.NDArray)
    line = choice.describe()
    assert line.startswith(f'auto chose {net.precision}: '
                           f'{rates[net.precision]:.1f} img/s, ')
    assert f'{choice.kept[net.precision]:.1%} of the calibration pixels'\
        in line and '\n' not in line


def test_auto_is_measured_once_per_run_and_cpu_and_kept_beside_it(
        run, synth_voc, tmp_path, monkeypatch, capsys):
    units_or_skip('int8')
    run = copy_of_run(run, tmp_path / 'run')
    rates = {'fp32': 1.0, 'bf16': 2.0, 'int8': 3.0}
    monkeypatch.setattr(auto, 'images_per_second', fixed_rates(rates))
    monkeypatch.setattr(auto, 'AGREEMENT', 0.0)
    assert main(['evaluate', '--run', run, '--data', synth_voc,
                 '--precision', 'auto']) == 0
    out = capsys.readouterr().out.splitlines()
    kept = os.path.join(run, 'auto.json')
    assert out[0].startswith('auto chose int8: 3.0 img/s, ')
    assert out[0].endswith(f'; kept in {kept}')
    assert 'labels, int8 on ' in out[1]
    assert out[2].startswith('int8 against fp32: ')
    saved = json.load(open(kept))
    assert list(saved) == [cpu.cpu_model()]
    assert saved[cpu.cpu_model()]['choice']['precision'] == 'int8'

    def measured_again(*args):
        raise AssertionError('measured again')
    monkeypatch.setattr(auto, 'images_per_second', measured_again)
    image = os.path.join(synth_voc, 'JPEGImages',
                         read_split(synth_voc, 'val')[0] + '.jpg')
    assert main(['predict', '--run', run, '--out', str(tmp_path / 'p'),
                 '--precision', 'auto', image]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith('auto chose int8: 3.0 img/s, ')
    assert out[1].startswith('predicting in int8 on ')
    # another CPU model is measured on its own, the first one's kept
    monkeypatch.setattr(auto, 'images_per_second', fixed_rates(rates))
    monkeypatch.setattr(choices, 'cpu_model', lambda: 'Other CPU')
    monkeypatch.setattr(auto, 'AGREEMENT', 1.01)
    assert loading.load_run(run, precision='auto')[0].precision == 'fp32'
    saved = json.load(open(kept))
    assert {k: v['choice']['precision'] for k, v in saved.items()} == \
        {cpu.cpu_model(): 'int8', 'Other CPU': 'fp32'}


def test_rates_come_from_every_net_on_every_batch_in_turns():
    calls = []

    class Counting(mx.gluon.Block):
        def __init__(self, name):
            super().__init__()
            self.tag = name

        def forward(self, x):
            calls.append((self.tag, x.shape[0]))
            return x

    nets = {'a': Counting('a'), 'b': Counting('b')}
    rates = auto.images_per_second(nets, CALIB[:5], array(CALIB[:2]),
                                   rounds=2)
    assert set(rates) == {'a', 'b'} and all(r > 0 for r in rates.values())
    # a warm-up batch each, then 3 batches of 2 (5 images) a round, in turn
    assert calls[:2] == [('a', 2), ('b', 2)]
    assert [t for t, _ in calls[2:]] == ['a'] * 3 + ['b'] * 3 + \
        ['a'] * 3 + ['b'] * 3


def test_export_writes_int8_that_loads_in_either_mode_with_its_logits(
        run, tmp_path, capsys):
    units_or_skip('int8')
    prefix = str(tmp_path / 'fcn-int8')
    result = export_net(run, fmt='mxnet', out=prefix, shape=(64, 96),
                        precision='int8')
    assert result['precision'] == 'int8'
    assert max(result['errors'].values()) < 1e-4  # against int8's logits
    assert 'exported int8 on ' in capsys.readouterr().out
    graph = json.load(open(prefix + '-symbol.json'))['nodes']
    assert any(n['op'] == '_sg_mkldnn_conv' and
               n.get('attrs', {}).get('quantized') == 'true' for n in graph)
    X = onp.random.RandomState(0).uniform(-2, 2, (1, 3, 64, 96))
    outputs = []
    for numpy_mode in (True, False):
        with mx.util.np_array(numpy_mode), mx.util.np_shape(numpy_mode):
            y = load_mxnet(prefix)(array(X.astype('float32')))
            assert isinstance(y, mx.np.ndarray) == numpy_mode
            outputs.append(y.asnumpy())
    assert outputs[0].shape == (1, 21, 64, 96)
    assert onp.array_equal(outputs[0], outputs[1])


@pytest.mark.parametrize('args,says', [
    (['--format', 'mxnet', '--precision', 'bf16'],
     '--precision bf16: does not export'),
    (['--format', 'onnx', '--precision', 'int8'],
     '--precision int8: --format onnx holds fp32 only')])
def test_export_refuses_what_does_not_export_in_one_line(
        run, tmp_path, capsys, args, says):
    out = tmp_path / 'fcn'
    assert main(['export', '--run', run, '--out', str(out)] + args) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f'gluon-fcn: error: {says}')
    assert not os.listdir(tmp_path)


def test_export_auto_takes_the_fastest_that_exports(
        run, tmp_path, monkeypatch, capsys):
    units_or_skip('int8')
    units_or_skip('bf16')
    run = copy_of_run(run, tmp_path / 'run')
    monkeypatch.setattr(auto, 'images_per_second', fixed_rates(
        {'fp32': 1.0, 'bf16': 3.0, 'int8': 2.0}))
    monkeypatch.setattr(auto, 'AGREEMENT', 0.0)
    prefix = str(tmp_path / 'fcn')
    assert main(['export', '--run', run, '--format', 'mxnet', '--out',
                 prefix, '--precision', 'auto']) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith('auto chose bf16: 3.0 img/s, ')
    assert out[1] == 'exporting int8: bf16 does not export'
    assert out[2].startswith('exported int8 on ')
    assert os.path.isfile(prefix + '-0000.params')


def test_int8_calibrates_without_a_word_from_mxnet(run, synth_voc, tmp_path,
                                                  capfd):
    """The first int8 call partitions graphs: MXNet's own INFO line
    ('Subgraph backend MKLDNN is activated') stays out of the output."""
    copy = copy_of_run(run, tmp_path / 'copy')
    image = os.path.join(synth_voc, 'JPEGImages',
                         read_split(synth_voc, 'val')[0] + '.jpg')
    assert main(['predict', '--run', copy, '--out', str(tmp_path / 'p'),
                 '--precision', 'int8', image]) == 0
    captured = capfd.readouterr()
    assert 'Subgraph backend' not in captured.err + captured.out
    assert os.environ.get('MXNET_SUBGRAPH_VERBOSE') is None  # restored
    # what it wrote, and how much, in one line; nothing the second time
    folder = os.path.join(copy, 'int8')
    size = sum(os.path.getsize(os.path.join(folder, name))
               for name in os.listdir(folder))
    assert f'the calibrated int8 net is kept in {folder} ' \
        f'({size / 1e6:.0f} MB)' in captured.err
    assert main(['predict', '--run', copy, '--out', str(tmp_path / 'p'),
                 '--precision', 'int8', image]) == 0
    assert 'calibrated int8 net' not in capfd.readouterr().err


def test_int8_of_a_copied_synthetic_run_writes_no_data(run, synth_voc,
                                                      tmp_path, monkeypatch,
                                                      capsys):
    """A run trained on `--data synthetic`, copied to another folder: its
    training images are not at its relative `data/` there. Calibration
    says so in one line instead of making the data set again."""
    copy = copy_of_run(run, tmp_path / 'copy')
    config_path = os.path.join(copy, 'config.json')
    with open(config_path) as f:
        config = json.load(f)
    config.update(data='synthetic', data_dir='data', synth_train=400,
                  synth_val=60, synth_scale=0.5)
    with open(config_path, 'w') as f:
        json.dump(config, f)
    image = os.path.join(synth_voc, 'JPEGImages',
                         read_split(synth_voc, 'val')[0] + '.jpg')
    monkeypatch.chdir(tmp_path)
    assert main(['predict', '--run', copy, '--out', 'p', '--precision',
                 'int8', image]) == 2
    err = without_synthetic_note(capsys.readouterr().err.splitlines())
    assert len(err) == 1
    assert "calibrating needs the run's training images, not found at " \
        f"{os.path.join('data', 'synthetic_400_60_x0.5')}" in err[0]
    assert 'run from the folder the run was trained in' in err[0]
    assert not os.path.exists(tmp_path / 'data')
