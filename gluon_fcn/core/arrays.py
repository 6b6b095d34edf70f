"""The two flavours of MXNet array, chosen by the caller's mode.

MXNet 1.9 has legacy `NDArray`s and, with NumPy mode on (`npx.set_np()`),
`mxnet.numpy` arrays; a block's parameters take the flavour of the mode
they are initialised in, and operators refuse the other flavour. The
package never switches the mode itself: these helpers make arrays in the
mode in force and convert between flavours where an operator exists in
one only.
"""
import contextlib

import mxnet as mx
import numpy as onp
from mxnet import util


def numpy_mode():
    """Whether MXNet's NumPy array semantics are on in this thread."""
    return util.is_np_array()


@contextlib.contextmanager
def legacy_semantics():
    """MXNet's legacy array and shape semantics inside the block, the
    caller's mode restored after: for what exists in the legacy flavour
    only (the legacy file format, AMP, quantization, MXNet's ONNX
    exporter)."""
    with util.np_array(False), util.np_shape(False):
        yield


def settle():
    """Wait until MXNet has run every operation queued so far.

    Call it before reading parameters out of MXNet (`asnumpy`, exports).
    A forward pass outside `autograd.record` moves each convolution
    weight it reads into oneDNN's blocked layout, in an operation the
    convolution queues while it runs. `asnumpy` waits only for the writes
    queued before it, so a read while such a forward is still queued can
    copy a weight in the middle of its move: silently wrong values (28%
    of a 512x256x3x3 weight, seen once in 40 fresh nets), or MXNet's
    `Check failed: !IsMKLDNNData()`.
    """
    mx.nd.waitall()


def is_numpy(x):
    """Whether `x` is an `mxnet.numpy` array (or symbol)."""
    return isinstance(x, (mx.np.ndarray, mx.sym.np._Symbol))


def zeros(shape, ctx=None, dtype='float32'):
    """Zeros in the flavour of the current mode."""
    module = mx.np if numpy_mode() else mx.nd
    return module.zeros(shape, ctx=ctx, dtype=dtype)


def array(obj, ctx=None, dtype=None):
    """`obj` (NumPy or MXNet) as an array of the current mode's flavour."""
    if hasattr(obj, 'asnumpy'):
        obj = obj.asnumpy()
    module = mx.np if numpy_mode() else mx.nd
    return module.array(obj, ctx=ctx, dtype=dtype)


def as_numpy(x):
    """`x` as an `mxnet.numpy` array or symbol (no copy)."""
    return x if is_numpy(x) else x.as_np_ndarray()


def as_legacy(x):
    """`x` as a legacy `NDArray` or symbol (no copy)."""
    return x.as_nd_ndarray() if is_numpy(x) else x


def legacy(X):
    """`X` as a legacy NDArray: `mxnet.numpy` arrays are viewed, NumPy
    arrays copied (floats as float32, integers kept)."""
    if isinstance(X, (mx.np.ndarray, mx.nd.NDArray)):
        return as_legacy(X)
    X = onp.asarray(X)
    return mx.nd.array(X, dtype='float32' if X.dtype.kind == 'f'
                       else X.dtype)


def host(x):
    """`x` (NumPy, an `NDArray` or an `mxnet.numpy` array) as a NumPy
    array: MXNet's copied out, NumPy's as it is. (`onp.asarray` of an
    `NDArray` makes an object array of scalars, an element at a time.)"""
    return x.asnumpy() if hasattr(x, 'asnumpy') else onp.asarray(x)


def like(x, ref):
    """`x` in the flavour of `ref` (no copy)."""
    return as_numpy(x) if is_numpy(ref) else as_legacy(x)


def to_mode(x):
    """`x` in the flavour of the current mode (no copy)."""
    return as_numpy(x) if numpy_mode() else as_legacy(x)
