"""What a checkpoint needs beyond `save_parameters` to resume exactly.

`Block.save_parameters` writes one copy of each parameter, averaging the
copies of the devices. The trained weights are equal on every device (the
Trainer broadcasts them), but BatchNorm's running statistics are not:
each device updates its own from its share of each batch. A run resumed
from the average would evaluate, and end, differently from one never
interrupted, so the copies of every device are kept beside it.
"""
import os

import mxnet as mx

from .errors import FCNError


def device_params(net):
    """{structured name: Parameter} of the parameters the optimizer does
    not update (BatchNorm's running mean and variance)."""
    return {name: p for name, p in net._collect_params_with_prefix().items()
            if p.grad_req == 'null'}


def save_device_copies(net, path):
    """Write every device's copy of `device_params(net)` to `path`."""
    arrays = {f'{j}:{name}': data.as_nd_ndarray()
              for name, p in device_params(net).items()
              for j, data in enumerate(p.list_data())}
    mx.nd.save(path, arrays)


def load_device_copies(net, path):
    """Restore what `save_device_copies` wrote, device by device (a
    checkpoint written before these files existed has none: skipped)."""
    if not os.path.isfile(path):
        return
    try:
        arrays = mx.nd.load(path)
    except Exception as e:  # MXNetError: truncated or not an NDArray file
        raise FCNError(f'{path}: cannot read the checkpoint') from e
    for name, p in device_params(net).items():
        for j, data in enumerate(p.list_data()):
            key = f'{j}:{name}'
            if key not in arrays:
                raise FCNError(f'{path}: has no {key} (was the run on '
                               'other devices?)')
            data[:] = arrays[key].as_np_ndarray().as_in_ctx(data.ctx)
