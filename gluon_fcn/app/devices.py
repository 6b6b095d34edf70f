"""The devices a command runs on, from its flags: `--devices
cpu:0,cpu:1`, `--device gpu:0`, 'auto' (every GPU, else the CPU)."""
import mxnet as mx

from ..errors import FCNError


def parse_devices(spec, flag='--devices'):
    """'auto' -> every GPU, else the CPU; 'cpu:0,cpu:1' -> two CPU contexts.
    """
    num_gpus = mx.context.num_gpus()
    if spec == 'auto':
        return [mx.gpu(i) for i in range(num_gpus)] or [mx.cpu()]
    devices = []
    for item in spec.split(','):
        kind, _, index = item.strip().partition(':')
        if kind not in ('cpu', 'gpu') or not (index or '0').isdigit():
            raise FCNError(f'{flag}: cannot read {item!r} '
                           '(write e.g. cpu:0,cpu:1 or gpu:0)')
        i = int(index or 0)
        if kind == 'gpu' and i >= num_gpus:
            raise FCNError(f'{flag}: {item} does not exist here '
                           f'({num_gpus} GPUs visible to MXNet)')
        devices.append(mx.gpu(i) if kind == 'gpu' else mx.cpu(i))
    return devices


def parse_device(spec, flag='--device'):
    """The one device of `spec`: 'cpu:0', 'gpu:1' or 'auto'."""
    devices = parse_devices(spec, flag)
    if len(devices) > 1 and spec != 'auto':
        raise FCNError(f'{flag} {spec}: give one device, e.g. cpu:0 or '
                       'gpu:0')
    return devices[0]
