"""The native operators on hostile input (issue 25): each call below ends
in an MXNetError naming the fault, or in the result the operators
document (gluon_fcn/fast/csrc/fcn_ops.cc), never in a crash.

The calls run in a child process (this file run as a script), so that a
crash fails its case instead of killing pytest; the cases after it run in
a new child. With GLUON_FCN_TEST_ASAN=1 the child loads an
AddressSanitizer build of the operators (README, "Native operators").
A call that raises anything but an MXNetError fails its case too.
"""
import json
import math
import os
import subprocess
import sys

import numpy as onp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LSE = math.log(1 + math.e + math.e ** 2)  # of logits 0, 1, 2 (`logits`)


class Error:
    """The call raises an MXNetError whose message holds `words`."""

    def __init__(self, words):
        self.words = words

    def __repr__(self):
        return f'Error({self.words!r})'


class Result:
    """The call returns arrays of these shapes and, where given, these
    values (NaN equal to NaN)."""

    def __init__(self, *shapes, values=None):
        self.shapes, self.values = [list(s) for s in shapes], values

    def __repr__(self):
        return f'Result({self.shapes}, values={self.values})'


BIG = 2 ** 30  # dims of empty tensors whose products pass 2^48
CASES = [
    # fcn_pixel_ce(logits (B, C, H, W), labels (B, H, W), ignore_label)
    ('ce: no class', 'ce(zeros(1, 0, 2, 2), zeros(1, 2, 2))',
     Error('have no class')),
    ('ce: labels of another size', 'ce(zeros(1, 3, 2, 2), zeros(1, 2, 3))',
     Error('need labels (B, H, W)')),
    ('ce: 4-d labels', 'ce(zeros(1, 3, 2, 2), zeros(1, 1, 2, 2))',
     Error('need labels (B, H, W)')),
    ('ce: 3-d logits', 'ce(zeros(3, 2, 2), zeros(1, 2, 2))',
     Error('need labels (B, H, W)')),
    ('ce: empty batch', 'ce(zeros(0, 3, 2, 2), zeros(0, 2, 2))',
     Result((0,), (0, 2, 2))),
    ('ce: images of no pixel have loss 0',
     'ce(zeros(2, 3, 0, 5), zeros(2, 0, 5))',
     Result((2,), (2, 0, 5), values=[[0, 0]])),
    ('ce: empty, too large', f'ce(zeros(0, 3, {BIG}, {BIG}), '
     f'zeros(0, {BIG}, {BIG}))', Error('is too large')),
    ('ce: NaN label', 'ce(logits(1, 3, 1, 2), labels([[nan, 0]]))',
     Error('label[0, 0, 0] is nan; labels must be finite')),
    ('ce: inf label', 'ce(logits(2, 3, 2, 2), labels([[0, 1], [2, 0]], '
     '[[1, 1], [1, inf]]))', Error('label[1, 1, 1] is inf')),
    ('ce: -inf label', 'ce(logits(1, 3, 1, 1), labels([[-inf]]))',
     Error('label[0, 0, 0] is -inf')),
    ('ce: NaN label, even with ignore_label',
     'ce(logits(1, 3, 1, 2), labels([[255, nan]]), ignore_label=255)',
     Error('label[0, 0, 1] is nan')),
    ('ce: labels above C are clipped to C - 1',
     'ce(logits(1, 3, 1, 2), labels([[3, 1e30]]))',
     Result((1,), (1, 1, 2), values=[[LSE - 2], [[[LSE, LSE]]]])),
    ('ce: negative labels are clipped to 0',
     'ce(logits(1, 3, 1, 3), labels([[-1, -0.5, -1e30]]))',
     Result((1,), (1, 1, 3), values=[[LSE], [[[LSE] * 3]]])),
    ('ce: fractions are truncated, as pick does',
     'ce(logits(1, 3, 1, 2), labels([[1.9, 0.9]]))',
     Result((1,), (1, 1, 2), values=[[LSE - 0.5]])),
    ('ce: all pixels ignored give loss 0',
     'ce(logits(1, 3, 1, 2), labels([[255, 255]]), ignore_label=255)',
     Result((1,), (1, 1, 2), values=[[0], [[[LSE, LSE]]]])),
    ('ce: NaN logits give a NaN loss',
     'ce(zeros(1, 3, 1, 1) * nan, labels([[0]]))',
     Result((1,), (1, 1, 1), values=[[math.nan], [[[math.nan]]]])),
    ('ce: ignore_label 2.5', "ce(zeros(1, 3, 1, 1), zeros(1, 1, 1), "
     "ignore_label='2.5')", Error("ignore_label must be an integer in")),
    ('ce: ignore_label 3abc', "ce(zeros(1, 3, 1, 1), zeros(1, 1, 1), "
     "ignore_label='3abc')", Error("got '3abc'")),
    ('ce: ignore_label empty', "ce(zeros(1, 3, 1, 1), zeros(1, 1, 1), "
     "ignore_label='')", Error("ignore_label must be an integer in")),
    ('ce: ignore_label beyond int32', "ce(zeros(1, 3, 1, 1), "
     "zeros(1, 1, 1), ignore_label=2 ** 40)",
     Error("ignore_label must be an integer in [-2147483648, 2147483647]")),
    ('ce: a misspelt attribute', 'ce(zeros(1, 3, 1, 1), zeros(1, 1, 1), '
     'ignore=255)', Error("unknown attribute 'ignore'")),
    ('ce: float64', "ce(zeros(1, 3, 1, 1, dtype='float64'), "
     "zeros(1, 1, 1, dtype='float64'))", Error('take float32 only')),
    ('ce backward: a head of another shape',
     "backward('fcn_pixel_ce', zeros(5), zeros(1, 2, 2), "
     'zeros(1, 3, 2, 2), zeros(1, 2, 2), zeros(1), zeros(1, 2, 2), '
     'outs=[zeros(1, 3, 2, 2), zeros(1, 2, 2)])',
     Error('got a tensor of shape (5,), expected (1,)')),
    ('ce backward: NaN label', "backward('fcn_pixel_ce', zeros(1), "
     'zeros(1, 1, 2), zeros(1, 3, 1, 2), labels([[0, nan]]), zeros(1), '
     'zeros(1, 1, 2), outs=[zeros(1, 3, 1, 2), zeros(1, 1, 2)])',
     Error('label[0, 0, 1] is nan')),
    ('ce backward: outputs MXNet did not shape',
     "backward('fcn_pixel_ce', zeros(1), zeros(1, 2, 2), "
     'zeros(1, 3, 2, 2), zeros(1, 2, 2), zeros(1), zeros(1, 2, 2))',
     Error('got a tensor of shape (), expected (1, 3, 2, 2)')),
    ('ce backward: too few inputs',
     "backward('fcn_pixel_ce', zeros(1), zeros(1, 2, 2))",
     Error('expects 6 inputs')),
    # fcn_blocks_to_image(z (B, H1, W1, C s s), channels, stride, pad)
    ('b2i: no channels', 'b2i(zeros(1, 2, 2, 8), stride=2)',
     Error('needs the attribute channels')),
    ('b2i: stride 0', 'b2i(zeros(1, 2, 2, 8), channels=2, stride=0)',
     Error('stride must be an integer in [1, 2147483647]')),
    ('b2i: negative channels',
     'b2i(zeros(1, 2, 2, 8), channels=-2, stride=2)',
     Error("channels must be an integer in [1, 2147483647], got '-2'")),
    ('b2i: stride 2.0', "b2i(zeros(1, 2, 2, 8), channels=2, stride='2.0')",
     Error("got '2.0'")),
    ('b2i: C s s that wraps in 32 bits', 'b2i(zeros(1, 1, 1, 0), '
     'channels=2 ** 20, stride=2 ** 12)',
     Error('input must be (B, H, W, C*s*s)')),
    ('b2i: an output side of 2^32', 'b2i(zeros(0, 2 ** 17, 1, 2 ** 30), '
     'channels=1, stride=2 ** 15)', Error('output 0 would be too large')),
    ('b2i: empty, too large', 'b2i(zeros(0, 2 ** 10, 2 ** 10, 2 ** 30), '
     'channels=1, stride=2 ** 15)', Error('is too large')),
    ('b2i: pad beyond the image',
     'b2i(zeros(1, 2, 2, 8), channels=2, stride=2, pad=3)',
     Error('2 pad <= s H, s W')),
    ('b2i: 3-d input', 'b2i(zeros(2, 2, 8), channels=2, stride=2)',
     Error('input must be (B, H, W, C*s*s)')),
    ('b2i: empty batch', 'b2i(zeros(0, 2, 2, 8), channels=2, stride=2)',
     Result((0, 2, 4, 4))),
    ('b2i: all cropped', 'b2i(ones(1, 1, 1, 4), channels=1, stride=2, '
     'pad=1)', Result((1, 1, 0, 0))),
    ('b2i backward: a gradient of another shape',
     "backward('fcn_blocks_to_image', zeros(1, 2, 3, 3), "
     'zeros(1, 2, 2, 8), zeros(1, 2, 4, 4), outs=[zeros(1, 2, 2, 8)], '
     'channels=2, stride=2)',
     Error('got a tensor of shape (1, 2, 3, 3), expected (1, 2, 4, 4)')),
    ('b2i backward: outputs MXNet did not shape',
     "backward('fcn_blocks_to_image', zeros(1, 2, 4, 4), "
     'zeros(1, 2, 2, 8), zeros(1, 2, 4, 4), channels=2, stride=2)',
     Error('got a tensor of shape (), expected (1, 2, 2, 8)')),
    # fcn_upsample(x (B, Ci, H, W), weight (Ci, Co, 2s, 2s), bias (Co,))
    ('up: stride 3', 'up(zeros(1, 2, 3, 3), zeros(2, 2, 6, 6), zeros(2), '
     'stride=3)', Error('stride must be 2, 4, 8, 16, 32 or 64, got 3')),
    ('up: stride 128', 'up(zeros(1, 1, 1, 1), zeros(1, 1, 256, 256), '
     'zeros(1), stride=128)', Error('stride must be an integer in [2, 64]')),
    ('up: no stride', 'up(zeros(1, 2, 3, 3), zeros(2, 2, 4, 4), zeros(2))',
     Error('needs the attribute stride')),
    ('up: pad = stride', 'up(zeros(1, 2, 3, 3), zeros(2, 2, 4, 4), '
     'zeros(2), stride=2, pad=2)', Error('pad must be an integer in [0, 1]')),
    ('up: pad -1', 'up(zeros(1, 2, 3, 3), zeros(2, 2, 4, 4), zeros(2), '
     'stride=2, pad=-1)', Error("pad must be an integer in [0, 1], got '-1'")),
    ('up: stride 2.5', "up(zeros(1, 2, 3, 3), zeros(2, 2, 4, 4), zeros(2), "
     "stride='2.5')", Error("stride must be an integer in [2, 64], got")),
    ('up: a misspelt attribute', 'up(zeros(1, 2, 3, 3), zeros(2, 2, 4, 4), '
     'zeros(2), strides=2)', Error("unknown attribute 'strides'")),
    ('up: a kernel not twice the stride', 'up(zeros(1, 2, 3, 3), '
     'zeros(2, 2, 6, 6), zeros(2), stride=2)',
     Error('weight (Ci, Co, 2s, 2s), bias (Co,) with s = 2')),
    ('up: weight of other input channels', 'up(zeros(1, 3, 3, 3), '
     'zeros(2, 2, 4, 4), zeros(2), stride=2)',
     Error('weight (Ci, Co, 2s, 2s)')),
    ('up: bias of another size', 'up(zeros(1, 2, 3, 3), zeros(2, 2, 4, 4), '
     'zeros(3), stride=2)', Error('bias (Co,)')),
    ('up: empty, too large', f'up(zeros(0, 1, {BIG}, {BIG}), '
     'zeros(1, 1, 4, 4), zeros(1), stride=2)', Error('is too large')),
    ('up: no input channel: the bias', 'up(zeros(1, 0, 1, 1), '
     'zeros(0, 2, 4, 4), array([1, 2]), stride=2, pad=1)',
     Result((1, 2, 2, 2), values=[
         onp.array([1, 2]).reshape(1, 2, 1, 1) * onp.ones((1, 2, 2, 2))])),
    ('up: an image of no row: the bias', 'up(zeros(1, 1, 0, 1), '
     'zeros(1, 1, 4, 4), array([3]), stride=2)',
     Result((1, 1, 2, 4), values=[onp.full((1, 1, 2, 4), 3)])),
    ('up: empty batch', 'up(zeros(0, 2, 3, 3), zeros(2, 2, 4, 4), zeros(2), '
     'stride=2, pad=1)', Result((0, 2, 6, 6))),
    ('up backward: a gradient of another shape',
     "backward('fcn_upsample', zeros(1, 2, 2, 2), zeros(1, 2, 3, 3), "
     'zeros(2, 2, 4, 4), zeros(2), zeros(1, 2, 6, 6), outs=[zeros(1, 2, 3, '
     '3), zeros(2, 2, 4, 4), zeros(2)], stride=2, pad=1)',
     Error('got a tensor of shape (1, 2, 2, 2), expected (1, 2, 6, 6)')),
    ('up backward: outputs MXNet did not shape',
     "backward('fcn_upsample', zeros(1, 2, 6, 6), zeros(1, 2, 3, 3), "
     'zeros(2, 2, 4, 4), zeros(2), zeros(1, 2, 6, 6), stride=2, pad=1)',
     Error('got a tensor of shape (), expected (1, 2, 3, 3)')),
]
NAMES = [name for name, _, _ in CASES]


def compiler_file(name):
    """The path of the compiler's library `name`, or None."""
    cxx = os.environ.get('CXX', 'g++')
    try:
        path = subprocess.run([cxx, f'-print-file-name={name}'],
                              capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
    return path if os.path.isabs(path) else None


def asan_env():
    """What the child needs to load an AddressSanitizer build: the flags
    (a library of its own in the cache) and the ASan runtime preloaded,
    since python is not built with it; libstdc++ too, or ASan finds no
    __cxa_throw to intercept and aborts at MXNet's first exception."""
    preload = [compiler_file('libasan.so'), compiler_file('libstdc++.so')]
    if None in preload:
        pytest.skip('the compiler has no AddressSanitizer runtime')
    return {'GLUON_FCN_CXXFLAGS': '-fsanitize=address '
            '-fno-omit-frame-pointer', 'LD_PRELOAD': ' '.join(preload),
            'ASAN_OPTIONS': 'detect_leaks=0'}  # python's own are many


def run_cases(indices, env):
    """{case index: outcome} from children running the cases in turn; a
    child that dies is the outcome of the case it was running (of all,
    before the operators loaded), and a new one runs the rest."""
    outcomes, todo = {}, list(indices)
    while todo:
        proc = subprocess.run(
            [sys.executable, __file__, *map(str, todo)], env=env,
            capture_output=True, text=True, timeout=900)
        found = [json.loads(line) for line in proc.stdout.splitlines()
                 if line.startswith('{')]
        for outcome in found:
            if 'unavailable' in outcome:
                pytest.skip(f'native operators: {outcome["unavailable"]}')
            if 'case' in outcome:
                outcomes[outcome.pop('case')] = outcome
        todo = [i for i in todo if i not in outcomes]
        if proc.returncode == 0 or not todo:
            break
        tail = '\n'.join(proc.stderr.splitlines()[-25:])
        crash = {'crash': f'exit {proc.returncode}\n{tail}'}
        dead = todo if {'ready': True} not in found else todo[:1]
        outcomes.update((i, crash) for i in dead)
        todo = todo[len(dead):]
    return outcomes


@pytest.fixture(scope='module')
def outcomes():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    if os.environ.get('GLUON_FCN_TEST_ASAN') == '1':
        env.update(asan_env())
    return run_cases(range(len(CASES)), env)


@pytest.mark.parametrize('index', range(len(CASES)), ids=NAMES)
def test_hostile_call_fails_cleanly_or_gives_the_documented_result(
        index, outcomes):
    name, call, expected = CASES[index]
    got = outcomes[index]
    assert 'crash' not in got, got['crash']
    if isinstance(expected, Error):
        assert 'error' in got, f'{call} returned {got}, not {expected}'
        assert expected.words in got['error'], got['error']
        return
    assert 'error' not in got, got['error']
    assert got['shapes'] == expected.shapes
    for value, want in zip(got['values'], expected.values or []):
        onp.testing.assert_allclose(onp.array(value, dtype=float),
                                    onp.array(want, dtype=float),
                                    rtol=1e-6, equal_nan=True)


# The child: runs the cases whose indices it is given, one JSON line each.

def message(error):
    """MXNet's own line of `error`, and for an operator's failure its
    newest line from fcn_ops.cc (lib_api keeps every earlier one too)."""
    lines = [line.strip() for line in str(error).splitlines()]
    head = next((line for line in lines if line.startswith('MXNetError')),
                lines[0] if lines else '')
    ours = [line.split(']: ', 1)[-1] for line in lines
            if 'fcn_ops.cc[' in line]
    return f'{head} {ours[-1]}' if 'custom operator' in head and ours \
        else head


def child_namespace():
    """The names the cases' calls use."""
    import ctypes

    import mxnet as mx
    from mxnet.base import _LIB, OpHandle, c_str, check_call
    from mxnet.ndarray._internal import _imperative_invoke

    nd = mx.nd

    def zeros(*shape, dtype='float32'):
        return nd.zeros(shape, dtype=dtype)

    def ones(*shape):
        return nd.ones(shape)

    def labels(*rows):  # (B, H, W) from B nested lists of H rows
        return nd.array(onp.array(rows, dtype='float32'))

    def array(values):
        return nd.array(onp.array(values, dtype='float32'))

    def logits(b, c, h, w):  # class k scores k: loss LSE - k
        return nd.array(onp.arange(c, dtype='float32').reshape(1, c, 1, 1)
                        * onp.ones((b, c, h, w), dtype='float32'))

    def backward(op, *inputs, outs=None, **attrs):
        """MXNet's `_backward_<op>` called directly, as autograd would
        not: any inputs, and outputs given or left to MXNet."""
        handle = OpHandle()
        check_call(_LIB.NNGetOpHandle(c_str(f'_backward_{op}'),
                                      ctypes.byref(handle)))
        return _imperative_invoke(handle.value, list(inputs),
                                  list(attrs), [str(v) for v in
                                                attrs.values()],
                                  outs, False, True)

    return dict(nd=nd, zeros=zeros, ones=ones, labels=labels, array=array,
                logits=logits, backward=backward, nan=float('nan'),
                inf=float('inf'), ce=nd.fcn_pixel_ce,
                b2i=nd.fcn_blocks_to_image, up=nd.fcn_upsample)


def run_child(indices):
    import mxnet as mx

    from gluon_fcn.fast import native
    if not native.load():
        print(json.dumps({'unavailable': 'not built here'}), flush=True)
        return
    mx.util.set_np_shape(True)  # zero-size arrays are shapes, not unknown
    names = child_namespace()
    print(json.dumps({'ready': True}), flush=True)
    for i in indices:
        try:
            out = eval(CASES[i][1], names)
            out = out if isinstance(out, list) else [out]
            arrays = [a.asnumpy() for a in out]
            found = {'shapes': [list(a.shape) for a in arrays],
                     'values': [a.tolist() for a in arrays]}
        except mx.base.MXNetError as e:
            found = {'error': message(e)}
        print(json.dumps({'case': i, **found}), flush=True)


if __name__ == '__main__':
    run_child([int(i) for i in sys.argv[1:]])
