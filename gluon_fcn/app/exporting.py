"""`gluon-fcn export`: a run or a zoo model as MXNet symbol files or ONNX,
checked against MXNet on a random input before the command ends; a run in
int8 too (MXNet symbol files with oneDNN's operators), or in the precision
`--precision auto` picks among those that export.
"""
import numpy as onp

import mxnet as mx

from ..core.arrays import legacy_semantics
from ..core.labels import Legend
from ..core.torchvision_fcn import PREFIX
from ..core.zoo import load_pretrained
from ..errors import FCNError
from ..fast.portable import (OnnxNet, export_int8, export_mxnet, export_onnx,
                           load_mxnet, max_relative_error)
from .inference import precision_line, print_choice
from .loading import load_run, read_run

# what exports: MXNet 1.9.1 writes AMP's bf16 graph without the casts it
# runs with, and the file does not load back
EXPORTABLE = ('fp32', 'int8')


def net_to_export(run=None, model=None, model_root=None, params=None):
    """The net of `--run` (as it trained, native operators and all) or
    `--model`, its `Legend` and its default input size; call with NumPy
    mode off."""
    if run:
        net, config = read_run(run)
        return net, Legend(config.classes), config.crop
    net = load_pretrained(model, model_root, params)
    return net, net.legend, net.window


def int8_to_export(run, precision='fp32', fmt='mxnet'):
    """The run's int8 `InferenceFCN` where `precision` is 'int8', or
    'auto' picks int8 among `EXPORTABLE`; else None (float32: the chapter's
    layers export). Call with NumPy mode off."""
    if precision == 'fp32':
        return None
    if not run:
        raise FCNError(f'--precision {precision}: goes with --run (it is '
                       "calibrated on the run's images)")
    if precision == 'bf16':
        raise FCNError('--precision bf16: does not export (MXNet 1.9.1 '
                       "writes AMP's bf16 graph without its casts); export "
                       'fp32 or int8')
    if fmt == 'onnx' and precision == 'auto':
        print('auto: --format onnx holds fp32 only; exporting fp32')
        return None
    if fmt == 'onnx':
        raise FCNError(f'--precision {precision}: --format onnx holds fp32 '
                       "only (MXNet's ONNX exporter has no oneDNN int8 "
                       'operators); use --format mxnet')
    net = load_run(run, precision=precision)[0]
    chosen = getattr(net, 'precision', 'fp32')  # skip heads: fp32 only
    if getattr(net, 'choice', None) is not None:
        print_choice(net, run)
        exported = net.choice.fastest(EXPORTABLE)
        if exported != chosen:
            print(f'exporting {exported}: {chosen} does not export')
        if exported == 'int8' and chosen != 'int8':
            net = load_run(run, precision='int8')[0]
        chosen = exported
    return net if chosen == 'int8' else None


def random_input(shape, seed=0):
    """A seeded (1, 3, H, W) legacy NDArray, normalised-image-like."""
    X = onp.random.RandomState(seed).standard_normal((1, 3) + tuple(shape))
    return mx.nd.array(X.astype('float32'))


def export_net(run=None, model=None, model_root=None, params=None,
               fmt='onnx', out='fcn.onnx', shape=None, dynamic=False,
               precision='fp32'):
    """Export a run or a zoo model (`fmt` 'mxnet' or 'onnx'), a run in
    int8 where `precision` asks (`int8_to_export`), and print the files
    with the largest relative error of the exported model against MXNet's
    net, at `shape` and, where `dynamic`, at a second size. Returns
    {'files': [...], 'errors': {'HxW': error}, 'precision': ...}."""
    if fmt == 'onnx' and model and model.startswith(PREFIX):
        raise FCNError(f"--format onnx: {model} resizes as torch's bilinear "
                       "interpolate, which MXNet 1.9.1's ONNX exporter "
                       'cannot write (align_corners=True only); use '
                       '--format mxnet')
    with legacy_semantics():  # MXNet's exporters know legacy operators only
        net, legend, window = net_to_export(run, model, model_root, params)
        int8 = int8_to_export(run, precision, fmt)
        shape = tuple(shape or window)
        shapes = [shape] + ([(shape[0] + 32, shape[1] + 64)] if dynamic
                            else [])
        inputs = [random_input(s, k) for k, s in enumerate(shapes)]
        net.hybridize()  # MXNet's graph: what `net.export` writes
        wanted = [(int8 or net)(X).asnumpy() for X in inputs]
        if int8 is not None:
            files = export_int8(int8, out, shape)
            exported = load_mxnet(out)
            print(f'exported {precision_line(int8)} (MXNet with oneDNN, '
                  'on a CPU)')
        elif fmt == 'mxnet':
            files = export_mxnet(net, out, shape)
            exported = load_mxnet(out)
        else:
            files = [export_onnx(net, out, shape, dynamic, legend)]
            exported = OnnxNet(out)
        errors = {f'{h}x{w}': max_relative_error(exported(X), want)
                  for (h, w), X, want in zip(shapes, inputs, wanted)}
    runtime = 'MXNet (SymbolBlock)' if fmt == 'mxnet' else 'onnxruntime'
    print(f'wrote {", ".join(files)}; {runtime} vs MXNet, max relative '
          'error: ' + ', '.join(f'{e:.1e} at {s}' for s, e in
                                errors.items()))
    return {'files': files, 'errors': errors,
            'precision': 'int8' if int8 is not None else 'fp32'}
