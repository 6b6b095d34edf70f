"""Reading weights out of MXNet waits for the forward passes still queued
(`gluon_fcn.core.arrays.settle`): otherwise a read can copy a weight
while oneDNN moves it into its own layout, and return garbage or fail
(issue 21: `compare` and `export_state_dict` after other work in one
process).

The race itself is rare and timing-bound, so these tests make the queue
observable instead: an operator that sleeps in MXNet's engine, then marks
itself done, queued last. A function that settles waits for all that is
queued, so it cannot return before the mark.
"""
import threading
import time

import mxnet as mx
import numpy as onp
import pytest

from gluon_fcn.core.arrays import as_legacy, zeros
from gluon_fcn.core.model import build_fcn

pytestmark = pytest.mark.numerical  # again under lower ISAs

DONE = threading.Event()


class Slow(mx.operator.CustomOp):
    """Identity, a second late, then DONE is set."""

    def forward(self, is_train, req, in_data, out_data, aux):
        time.sleep(1)
        self.assign(out_data[0], req[0], in_data[0])
        DONE.set()

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        self.assign(in_grad[0], req[0], out_grad[0])


@mx.operator.register('gluon_fcn_test_slow')
class SlowProp(mx.operator.CustomOpProp):
    def list_arguments(self):
        return ['data']

    def infer_shape(self, in_shape):
        return in_shape, in_shape, []

    def create_operator(self, ctx, shapes, dtypes):
        return Slow()


def queue_slow(X):
    """The slow operator queued on `X` (an array of either flavour): DONE
    is clear until the engine has run it."""
    DONE.clear()
    return mx.nd.Custom(as_legacy(X), op_type='gluon_fcn_test_slow')


def test_build_fcn_returns_after_the_queue_has_run():
    queue_slow(mx.nd.ones((1,)))
    build_fcn(3, 'resnet18_v1')
    assert DONE.is_set()


def export_after_queued_forward():
    """The user's case: a forward (inference mode: it moves the weights
    into oneDNN's layout), then `export_state_dict` at once. The export
    waits for the forward, and its weights are the net's."""
    tp = pytest.importorskip('gluon_fcn.compare.torch_port')
    net = build_fcn(3, 'resnet18_v1')
    before = {k: v.numpy().copy() for k, v in
              tp.export_state_dict(net).items()}
    # reading the first BatchNorm's statistics waits for the first
    # layers (oneDNN writes them in inference mode too), not the rest
    queue_slow(net(zeros((1, 3, 64, 64))))
    state = tp.export_state_dict(net)
    assert DONE.is_set()
    for key, value in before.items():
        assert onp.array_equal(state[key].numpy(), value), key


def test_export_waits_for_a_queued_forward():
    export_after_queued_forward()


def test_export_waits_for_a_queued_forward_legacy(legacy_mode):
    export_after_queued_forward()
