"""Parameters on disk, readable in either MXNet mode, and what a
checkpoint needs beyond them to resume exactly.

`save_params` writes the legacy NDArray format whatever the mode: MXNet
loads it with `load_parameters` with NumPy mode on or off, where a file
written by `save_parameters` in NumPy mode cannot be loaded with it off.

`Block.save_parameters` writes one copy of each parameter, averaging the
copies of the devices. The trained weights are equal on every device (the
Trainer broadcasts them), but BatchNorm's running statistics are not:
each device updates its own from its share of each batch. A run resumed
from the average would evaluate, and end, differently from one never
interrupted, so the copies of every device are kept beside it.
"""
import os
import shutil
import tempfile

import mxnet as mx
import numpy as onp

from ..errors import FCNError
from .arrays import as_legacy, legacy_semantics, settle
from .files import IncompleteWrite, atomic_path, check_readable
from .mxnet_internals import structured_params


def save_params(net, path):
    """`net.save_parameters(path)` in the legacy format (module docstring):
    one copy of each parameter, the devices' copies averaged."""
    arrays = {}
    for name, p in structured_params(net).items():
        copies = [as_legacy(d).copyto(mx.cpu()) for d in p.list_data()]
        arrays[name] = copies[0] if len(copies) == 1 else \
            mx.nd.add_n(*copies) / len(copies)
    save_legacy(path, arrays)


def save_legacy(path, arrays):
    """`mx.nd.save` of a dict of NDArrays in the legacy format, in either
    mode, atomically (`atomic_path`). MXNet ignores a failure of its last
    flush (a disk that fills up then), so the size is checked too."""
    with atomic_path(path) as tmp:
        with legacy_semantics():
            mx.nd.save(tmp, arrays)
        written, expected = os.path.getsize(tmp), saved_size(arrays)
        if written != expected:
            raise IncompleteWrite(f'MXNet wrote {written} of {expected} '
                                  'bytes')


def saved_size(arrays):
    """The bytes `mx.nd.save` writes for a dict of dense NDArrays with
    legacy shapes (dmlc's format, MXNet 1.x): a 24-byte header; per array
    a magic, its storage type, ndim, int64 dims, its device (8 bytes), a
    dtype flag and the data; then the count of names and each name
    after its int64 length."""
    size = 24 + 8
    for name, a in arrays.items():
        size += 4 + 4 + 4 + 8 * a.ndim + 8 + 4
        size += a.size * onp.dtype(a.dtype).itemsize
        size += 8 + len(name.encode())
    return size


def load_legacy(path):
    """What `save_legacy` wrote, as NDArrays, in either mode."""
    check_readable(path, 'params file')
    with legacy_semantics():
        return mx.nd.load(path)


def device_params(net):
    """{structured name: Parameter} of the parameters the optimizer does
    not update (BatchNorm's running mean and variance)."""
    return {name: p for name, p in structured_params(net).items()
            if p.grad_req == 'null'}


def save_device_copies(net, path):
    """Write every device's copy of `device_params(net)` to `path`."""
    arrays = {f'{j}:{name}': as_legacy(data)
              for name, p in device_params(net).items()
              for j, data in enumerate(p.list_data())}
    save_legacy(path, arrays)


class UnreadableCheckpoint(FCNError):
    """A checkpoint file that does not load (cut short, or not one)."""


def load_device_copies(net, path):
    """Restore what `save_device_copies` wrote, device by device (a
    checkpoint written before these files existed has none: skipped)."""
    if not os.path.isfile(path):
        return
    try:
        arrays = load_legacy(path)
    except Exception as e:  # MXNetError: truncated or not an NDArray file
        raise UnreadableCheckpoint(f'{path}: cannot read the '
                                   'checkpoint') from e
    for name, p in device_params(net).items():
        for j, data in enumerate(p.list_data()):
            key = f'{j}:{name}'
            if key not in arrays:
                raise FCNError(f'{path}: has no {key} (was the run on '
                               'other devices?)')
            data[:] = arrays[key].as_in_context(data.context).asnumpy()


GRAPH_FILES = ('-symbol.json', '-0000.params')


def export_graph(block, prefix):
    """Write a hybridized `block` that has run as PREFIX-symbol.json and
    PREFIX-0000.params (`HybridBlock.export`, MXNet's format), each file
    through `atomic_path`, the params last: the pair is complete when both
    exist, and a failure leaves no temporary beside them. Call it in the
    MXNet mode of the block's arrays. Returns the files' paths."""
    files = [prefix + suffix for suffix in GRAPH_FILES]
    settle()  # the weights are read below
    with tempfile.TemporaryDirectory() as work:
        block.export(os.path.join(work, 'graph'))
        for suffix, path in zip(GRAPH_FILES, files):
            with atomic_path(path) as tmp:
                shutil.copyfile(os.path.join(work, 'graph' + suffix), tmp)
    return files
