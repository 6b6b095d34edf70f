"""A trained FCN taken elsewhere: MXNet's symbol files and ONNX. It lives
beside the fast paths because it undoes them: the exported graph holds
MXNet's own operators only.

- `export_mxnet`: `net.export` -> `PATH-symbol.json` + `PATH-0000.params`,
  which `load_mxnet` (`gluon.SymbolBlock.imports`) loads into an equal
  net, in either MXNet mode, at any input size.
- `export_onnx`: the same graph through MXNet's exporter
  (`mx.onnx.export_model`), at a fixed input shape or, `dynamic`, any
  batch, height and width; `OnnxNet` runs the file with onnxruntime.

The native operators have no counterpart elsewhere, so the chapter's
layers take their place first (`use_chapter_layers`): same parameters,
same numbers. MXNet 1.9.1's ONNX exporter knows the legacy operators only,
so a net to export is built with NumPy mode off
(`gluon_fcn.core.arrays.legacy_semantics`).

ONNX needs the `export` extra: onnx (1.15 to 1.18: 1.19 dropped
`onnx.mapping`, which MXNet 1.9.1's exporter calls) and onnxruntime.
"""
import importlib
import json
import os
import tempfile
import warnings

import mxnet as mx
import numpy as onp
from mxnet import gluon

from ..core.arrays import is_numpy, like, settle, to_mode
from ..core.checkpoint import export_graph, load_legacy
from ..core.files import atomic_path
from ..core.labels import Legend
from ..d2l import VOC_CLASSES
from ..errors import FCNError
from .upsample import use_chapter_layers

META = 'gluon_fcn'  # prefix of our keys in the ONNX file's metadata
WINDOW = (320, 480)  # d2l's crop: the window of a foreign dynamic file


def import_extra(name):
    """onnx or onnxruntime, or one line saying how to install them."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise FCNError(f'{name} is not installed ({e}): pip install '
                       "'gluon-fcn[export]'") from e


def first_data(net):
    return next(iter(net.collect_params().values())).list_data()[0]


def check_legacy(net):
    """Refuse a net built with NumPy mode on, in one line."""
    if is_numpy(first_data(net)):
        raise FCNError('export: build the net with NumPy mode off (with '
                       'gluon_fcn.core.arrays.legacy_semantics()); MXNet\'s '
                       'exporters know the legacy operators only')


def export_mxnet(net, path, shape=(320, 480)):
    """Write `net`'s graph and weights as `path-symbol.json` and
    `path-0000.params` (`HybridBlock.export`, input 'data'), each file
    atomically; returns their paths.

    `net`, built with NumPy mode off, is traced at input (1, 3, *shape)
    after its native operators are replaced, in place, by the chapter's
    layers. The files load at any input size (`load_mxnet`).
    """
    check_legacy(net)
    use_chapter_layers(net)
    net.hybridize()
    net(mx.nd.zeros((1, 3) + tuple(shape), ctx=first_data(net).context))
    return export_graph(net, path)


def export_int8(net, path, shape=(320, 480)):
    """Write an `InferenceFCN` in int8 (`optimize_for_inference`) as
    `export_mxnet` writes a net: its body quantized and fused by oneDNN,
    then its head as the chapter's transposed convolutions, in float32;
    returns the files' paths. Call with NumPy mode off."""
    use_chapter_layers(net.head)  # the same numbers, MXNet's operators
    net(mx.nd.zeros((1, 3) + tuple(shape)))  # traces the body's graph
    settle()  # the weights are saved below
    files = [f'{path}-symbol.json', f'{path}-0000.params']
    with tempfile.TemporaryDirectory() as tmp:
        net.body.export(os.path.join(tmp, 'body'))
        y = mx.sym.load(os.path.join(tmp, 'body-symbol.json'))
        arrays = mx.nd.load(os.path.join(tmp, 'body-0000.params'))
        for layer in net.head:
            y = layer(y)
            arrays.update({f'arg:{p.name}': p.data()
                           for p in layer.collect_params().values()})
        with atomic_path(files[0]) as part:
            y.save(part)
        with atomic_path(files[1]) as part:
            mx.nd.save(part, arrays)
    return files


def load_mxnet(path, ctx=None):
    """The net `export_mxnet(net, path)` wrote, as a `gluon.SymbolBlock`
    in the flavour of the MXNet mode in force."""
    symbol, params = f'{path}-symbol.json', f'{path}-0000.params'
    for file in (symbol, params):
        if not os.path.isfile(file):
            raise FCNError(f'{file}: no such file')
    ctx = ctx or mx.cpu()
    with warnings.catch_warnings():  # MXNet warns of every input it types
        warnings.simplefilter('ignore')
        net = gluon.SymbolBlock.imports(symbol, ['data'], ctx=ctx)
    # the file is in the legacy format, which SymbolBlock.imports cannot
    # read with NumPy mode on: read it here, load it in the caller's mode
    arrays = {name: to_mode(a) for name, a in load_legacy(params).items()}
    net.collect_params().load_dict(arrays, ctx, filename=params)
    return net


def export_onnx(net, path, shape=(320, 480), dynamic=False, legend=None,
                batch_size=1):
    """Write `net` as an ONNX file, atomically; returns `path`.

    The input 'data' is (batch_size, 3, *shape), or with `dynamic` (N, 3,
    H, W) of any size. `legend` (the class names and palette) is kept in
    the file's metadata for `OnnxNet`. `net` as for `export_mxnet`.
    """
    import_extra('onnx')
    shape = tuple(shape)
    with tempfile.TemporaryDirectory() as tmp:
        symbol, params = export_mxnet(net, os.path.join(tmp, 'net'), shape)
        with atomic_path(path) as part, warnings.catch_warnings():
            warnings.simplefilter('ignore')  # onnx.mapping's deprecation
            mx.onnx.export_model(
                symbol, params, [(batch_size, 3) + shape], [onp.float32],
                part,
                dynamic=dynamic,
                dynamic_input_shapes=[(None, 3, None, None)]
                if dynamic else None)
            finish_onnx(part, shape, legend)
    return path


def finish_onnx(path, shape, legend=None):
    """Keep the weights out of the graph inputs, where MXNet's exporter
    puts them (onnxruntime then neither folds them nor stops warning of
    them, and a user could feed them), and add our metadata."""
    import onnx
    model = onnx.load(path)
    weights = {w.name for w in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    meta = {'shape': list(shape)}
    if legend is not None:
        meta.update(classes=list(legend.classes),
                    palette=list(legend.full_palette()),
                    background=legend.background)
    onnx.helper.set_model_props(
        model, {f'{META}.{k}': json.dumps(v) for k, v in meta.items()})
    onnx.save(model, path)


class OnnxNet:
    """An exported FCN run by onnxruntime on the CPU, called as a block
    is: a (B, 3, H, W) MXNet array of either flavour -> (B, C, H, W)
    logits of the same flavour and context.

    `legend` comes from the file's metadata (VOC's for 21 channels where
    it has none); `window` is its fixed input size, or the size it was
    exported at where `dynamic`.
    """

    def __init__(self, path):
        ort = import_extra('onnxruntime')
        if not os.path.isfile(path):
            raise FCNError(f'{path}: no such ONNX file')
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only, no advice on stderr
        try:
            self.session = ort.InferenceSession(
                path, options, providers=['CPUExecutionProvider'])
        except Exception as e:  # onnxruntime's own error types
            raise FCNError(f'{path}: not an ONNX model onnxruntime can '
                           'run') from e
        data = self.session.get_inputs()[0]
        self.input_name = data.name
        self.dynamic = not all(isinstance(d, int) for d in data.shape)
        meta = {k[len(META) + 1:]: json.loads(v) for k, v in
                self.session.get_modelmeta().custom_metadata_map.items()
                if k.startswith(f'{META}.')}
        self.path = path
        self.window = (tuple(meta.get('shape', WINDOW)) if self.dynamic
                       else tuple(data.shape[2:]))
        self.legend = onnx_legend(meta, self.session.get_outputs()[0])

    def __call__(self, X):
        try:
            out = self.session.run(None, {self.input_name: X.asnumpy()})[0]
        except Exception as e:  # a shape or type the file does not take
            raise FCNError(f'{self.path}: onnxruntime cannot run it on a '
                           f'{"x".join(map(str, X.shape))} input') from e
        return like(mx.nd.array(out, ctx=X.context), X)


def onnx_legend(meta, output):
    """The legend in the metadata, else class indices as names (VOC's
    names for 21 channels)."""
    if 'classes' in meta:
        return Legend(tuple(meta['classes']), tuple(meta['palette']),
                      meta['background'])
    channels = output.shape[1]
    if channels == len(VOC_CLASSES):
        return Legend(tuple(VOC_CLASSES))
    return Legend(tuple(f'class {k}' for k in range(channels)))


def max_relative_error(got, want):
    """max |got - want| / max |want| of two arrays of any kind."""
    got, want = (onp.asarray(x.asnumpy() if hasattr(x, 'asnumpy') else x)
                 for x in (got, want))
    return float(abs(got - want).max() / max(abs(want).max(), 1e-12))
