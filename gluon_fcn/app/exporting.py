"""`gluon-fcn export`: a run or a zoo model as MXNet symbol files or ONNX,
checked against MXNet on a random input before the command ends.
"""
import numpy as onp

import mxnet as mx

from ..core.arrays import legacy_semantics
from ..core.labels import Legend
from ..core.zoo import load_pretrained
from ..fast.export import (OnnxNet, export_mxnet, export_onnx, load_mxnet,
                           max_relative_error)
from .runs import read_run


def net_to_export(run=None, model=None, model_root=None, params=None):
    """The net of `--run` (as it trained, native operators and all) or
    `--model`, its `Legend` and its default input size; call with NumPy
    mode off."""
    if run:
        net, config = read_run(run)
        return net, Legend(config.classes), config.crop
    net = load_pretrained(model, model_root, params)
    return net, net.legend, net.window


def random_input(shape, seed=0):
    """A seeded (1, 3, H, W) legacy NDArray, normalised-image-like."""
    X = onp.random.RandomState(seed).standard_normal((1, 3) + tuple(shape))
    return mx.nd.array(X.astype('float32'))


def export_net(run=None, model=None, model_root=None, params=None,
               fmt='onnx', out='fcn.onnx', shape=None, dynamic=False):
    """Export a run or a zoo model (`fmt` 'mxnet' or 'onnx') and print the
    files with the largest relative error of the exported model against
    MXNet's net, at `shape` and, where `dynamic`, at a second size.
    Returns {'files': [...], 'errors': {'HxW': error}}."""
    with legacy_semantics():  # MXNet's exporters know legacy operators only
        net, legend, window = net_to_export(run, model, model_root, params)
        shape = tuple(shape or window)
        shapes = [shape] + ([(shape[0] + 32, shape[1] + 64)] if dynamic
                            else [])
        inputs = [random_input(s, k) for k, s in enumerate(shapes)]
        net.hybridize()  # MXNet's graph: what `net.export` writes
        wanted = [net(X).asnumpy() for X in inputs]
        if fmt == 'mxnet':
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
    return {'files': files, 'errors': errors}
