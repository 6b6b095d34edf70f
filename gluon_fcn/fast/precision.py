"""The chapter's net for inference on the CPU, in float32, bfloat16
(MXNet's AMP) or int8 (oneDNN's quantization, `mx.contrib.quantization`),
on AMX where the CPU and Linux allow it (`gluon_fcn.threads.enable_amx`).

The net (a `HybridSequential` ending in its transposed convolution) is
cut in two, and `InferenceFCN` runs the parts one after the other:

- the body, the backbone and the 1x1 score convolution, as one graph
  through oneDNN: convolution, BatchNorm, ReLU and the residual sum fused
  into one kernel. bf16: the convolutions in bfloat16, BatchNorm's
  statistics kept in float32 (AMP's lists,
  `mxnet/contrib/amp/lists/symbol_bf16.py`). int8: every convolution,
  the first and the score one included, in int8 with its BatchNorm and
  ReLU, scales from a min/max ('naive') calibration on a few images; the
  residual sums fused in int8 too where that keeps the classes of the
  calibration images' pixels (`int8_body`), else in float32; the output
  back in float32.
- the head, the transposed convolution, in float32 through the quadrant
  split in one native operator (`fcn_upsample`, `fast.upsample`): AMP
  keeps `Deconvolution` in float32 in any case, and MXNet has no int8
  one. Converting the whole chapter-layer net instead, with oneDNN's
  transposed convolution, was slower in int8 and in bf16 (README, results
  log, "Measured while writing the code").

What this CPU offers each precision, and where one is known to be slower
than float32, is `fast.cpu`'s; 'auto', the fastest measured, is
`fast.auto`'s. `layer_precisions` lists what each layer computes in. The
skip heads (`SkipFCN`) run in float32 only. The graph is traced from
`net` in the caller's mode and run under MXNet's legacy semantics (AMP
and the quantizer take legacy arrays only); `InferenceFCN` takes and
returns arrays of the caller's flavour.
"""
import contextlib
import json
import os
import warnings

import mxnet as mx
import numpy as onp
from mxnet import gluon
from mxnet.gluon import nn

from ..core.arrays import as_legacy, host, legacy, legacy_semantics, like
from ..core.checkpoint import GRAPH_FILES, export_graph
from ..core.mxnet_internals import cached_graph, child_blocks
from ..errors import FCNError
from .cpu import no_units, onednn, precision_units, slower_than_fp32
from .upsample import for_inference

PRECISIONS = ('fp32', 'bf16', 'int8')
CHOICES = PRECISIONS + ('auto',)  # 'auto': `gluon_fcn.fast.auto`
NUM_CALIB_EXAMPLES = 16


class PrecisionNote(UserWarning):
    """A precision this machine cannot run (the net runs in float32), or
    runs slower than float32 (it runs as asked)."""


def unusable(precision, ctx, net=None):
    """Why this machine cannot run `precision` for `net`, or None."""
    if ctx.device_type != 'cpu':
        return f'it runs on the CPU only, not {ctx}'
    if not onednn():
        return 'this MXNet has no oneDNN (MKLDNN)'
    if precision != 'auto' and not precision_units(precision):
        return no_units(precision)
    if net is not None and upsampler_index(net) is None:
        return ("it is for the chapter's 32s net, not a "
                f'{type(net).__name__}')
    return None


def usable_precision(precision, ctx=None, net=None):
    """`precision` if this machine runs it for `net`, else 'fp32' after
    one `PrecisionNote` saying why (for 'auto', silently: float32 is the
    one choice). Where it is known to run slower than float32
    (`cpu.slower_than_fp32`), `precision` after one `PrecisionNote`
    saying so: a user who asks for bf16 gets bf16's numbers."""
    if precision not in CHOICES:
        raise FCNError(f'unknown precision {precision!r}; choose from '
                       f'{", ".join(CHOICES)}')
    if precision == 'fp32':
        return precision
    reason = unusable(precision, ctx or mx.cpu(), net)
    if reason and precision == 'auto':
        return 'fp32'
    if reason:
        warnings.warn(f'{precision} inference: {reason}; running float32',
                      PrecisionNote, stacklevel=3)
        return 'fp32'
    slower = slower_than_fp32(precision)
    if slower:
        warnings.warn(f"{slower}; running {precision} as asked ('auto' "
                      'picks the fastest)', PrecisionNote, stacklevel=3)
    return precision


class InferenceFCN(nn.Block):
    """A fused `body` graph (legacy semantics, in float32, bf16 or int8)
    followed by a float32 `head`: (B, 3, H, W) -> (B, C, H, W) float32
    logits, in the flavour of its input."""

    def __init__(self, body, head, precision, **kwargs):
        super().__init__(**kwargs)
        self.body, self.head, self.precision = body, head, precision
        self.choice = None  # `fast.auto.Choice`, where 'auto' chose it

    def forward(self, x):
        with legacy_semantics():
            y = self.body(as_legacy(x))
            if onp.dtype(y.dtype) != onp.float32:  # bf16's last conv
                y = mx.nd.amp_cast(y, dtype='float32')
        return self.head(like(y, x))


def upsampler_index(net):
    """Where the first transposed convolution of a `HybridSequential`
    ending in them (the chapter's net) is; None for other nets."""
    if not isinstance(net, nn.HybridSequential):
        return None
    layers = list(child_blocks(net).values())
    first = next((i for i, layer in enumerate(layers)
                  if isinstance(layer, nn.Conv2DTranspose)), None)
    return first or None


def split_at_upsampler(net):
    """(body, head) of the chapter's net (`upsampler_index`): the layers
    before the first transposed convolution and the rest, sharing `net`'s
    parameters, the transposed convolutions computed by `fcn_upsample`
    where it runs (`for_inference`)."""
    layers = list(child_blocks(net).values())
    first = upsampler_index(net)
    body, head = nn.HybridSequential(), nn.HybridSequential()
    for layer in layers[:first]:
        body.add(layer)
    for layer in layers[first:]:
        head.add(for_inference(layer))
    return body, head


# how an addition of two equal shapes is written in a graph: the legacy
# operator, which oneDNN fuses into the convolution before it (conv + sum),
# or NumPy mode's, which it leaves apart
ADDITIONS = {True: 'elemwise_add', False: '_npi_add'}


def residual_additions(sym, shape, fused=True):
    """`sym` (legacy) with every addition of two equal shapes (ResNet's
    residual sums) written as `ADDITIONS[fused]`, whichever mode traced
    it. `shape` is the input's."""
    internals = sym.get_internals()
    _, shapes, _ = internals.infer_shape_partial(data=shape)
    shapes = dict(zip(internals.list_outputs(), shapes))
    graph = json.loads(sym.tojson())
    nodes = graph['nodes']

    def entry_shape(node_id, index):
        node = nodes[node_id]
        if node['op'] == 'null':
            return shapes.get(node['name'])
        return shapes.get(f'{node["name"]}_output' if index == 0 else
                          f'{node["name"]}_output{index}')

    for node in nodes:
        if node['op'] in ADDITIONS.values():
            a, b = (entry_shape(i, k) for i, k, *_ in node['inputs'])
            if a is not None and a == b:
                node['op'] = ADDITIONS[fused]
    return mx.sym.load_json(json.dumps(graph))


def legacy_graph(block, X, fused_sums=True):
    """A legacy-semantics `SymbolBlock` computing `block` (hybridized and
    run once on `X` here), its residual sums fused into the convolutions
    or not (`residual_additions`), holding copies of its parameters.
    Fused is faster, in float32 and in bf16 (README, results log,
    "Measured while writing the code")."""
    block.hybridize()
    block(X)
    inputs, sym = cached_graph(block)
    params = block.collect_params()
    with legacy_semantics():
        sym = residual_additions(as_legacy(sym), X.shape, fused_sums)
        graph = gluon.SymbolBlock(sym, [mx.sym.var(i.name) for i in inputs])
        args = set(sym.list_arguments())
        graph.collect_params().load_dict(
            {('arg:' if name in args else 'aux:') + name:
             as_legacy(p.data()) for name, p in params.items()},
            ctx=X.context)
    return graph


SUBGRAPH_VERBOSE = 'MXNET_SUBGRAPH_VERBOSE'


@contextlib.contextmanager
def quiet_partitioning():
    """Without the INFO line MXNet logs for each graph it partitions
    ('Subgraph backend MKLDNN is activated'): noise to a user who asked
    for a precision. MXNet reads the variable at each call; a user's own
    setting is kept."""
    given = SUBGRAPH_VERBOSE in os.environ
    os.environ.setdefault(SUBGRAPH_VERBOSE, '0')
    try:
        yield
    finally:
        if not given:
            os.environ.pop(SUBGRAPH_VERBOSE, None)


def fuse(graph, X):
    """`graph` through oneDNN's subgraph backend for inference on batches
    shaped like `X`: convolution, BatchNorm, ReLU and sum in one kernel,
    static memory and shapes."""
    with legacy_semantics(), quiet_partitioning():
        graph.optimize_for(as_legacy(X), backend='MKLDNN',
                           static_alloc=True, static_shape=True)
    return graph


def to_bfloat16(graph, X):
    """`graph` (from `legacy_graph`) through AMP in bfloat16, fused by
    oneDNN for inference on batches shaped like `X`."""
    from mxnet.contrib import amp
    with legacy_semantics():
        graph = amp.convert_hybrid_block(
            graph, target_dtype='bfloat16', cast_optional_params=True,
            ctx=X.context)
    return fuse(graph, X)


def to_int8(graph, X, calib_data):
    """`graph` (from `legacy_graph`) quantized to int8 by oneDNN, its
    scales calibrated (min/max) on `calib_data`, (N, 3, H, W) images."""
    from mxnet.contrib import quantization
    with legacy_semantics(), quiet_partitioning():
        calib = legacy(calib_data)
        batches = mx.io.NDArrayIter(calib, batch_size=min(8, len(calib)))
        with warnings.catch_warnings():  # "deprecated after MXNet 2.0"
            warnings.simplefilter('ignore')
            graph = quantization.quantize_net(
                graph, calib_mode='naive', calib_data=batches,
                num_calib_examples=len(calib), ctx=X.context)
        graph.hybridize(static_alloc=True, static_shape=True)
        graph(as_legacy(X))  # builds the graph `export_graph` writes
    return graph


def load_graph(prefix, ctx=None):
    """The graph `export_graph` wrote at `prefix`, or None where it is
    absent or incomplete."""
    files = [prefix + suffix for suffix in GRAPH_FILES]
    if not all(os.path.isfile(f) for f in files):
        return None
    with legacy_semantics(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "Cannot decide type for data"
        try:
            graph = gluon.SymbolBlock.imports(files[0], ['data'], files[1],
                                              ctx=ctx or mx.cpu())
        except Exception as e:  # MXNetError: damaged or foreign files
            raise FCNError(f'{files[1]}: cannot load the int8 net') from e
        graph.hybridize(static_alloc=True, static_shape=True)
    return graph


# the share of the calibration images' pixels whose class the int8 net
# with its residual sums fused (in int8) must keep, else the sums stay in
# float32: fused is much faster but keeps fewer pixels' classes, and on the
# demo run this bound kept the fused net (benchmarks/README.md, "Reduced
# precision", has the speeds and shares; more calibration images or
# entropy calibration kept no more).
INT8_AGREEMENT = 0.985
INT8_RECIPE = 2  # saved int8 nets of another recipe are calibrated again


def calibration_array(calib_data):
    """`calib_data` (NumPy, an `NDArray`, an `mxnet.numpy` array, or a
    function returning one) as (N, 3, H, W) float32 NumPy images."""
    images = calib_data() if callable(calib_data) else calib_data
    try:
        images = host(images).astype('float32')
    except (TypeError, ValueError) as e:
        raise FCNError(f'calib_data: not an array of images '
                       f'({type(images).__name__}: {e})') from e
    if images.ndim != 4 or images.shape[1] != 3 or not len(images):
        raise FCNError(f'calib_data: expected (N, 3, H, W) images, got '
                       f'shape {images.shape}')
    return images


def batches_like(images, X):
    """(batch, how many of its images count) over `images` ((N, 3, H, W)
    NumPy), in arrays shaped and flavoured like `X`: the last batch filled
    with the first images, which count once."""
    n, size = len(images), X.shape[0]
    order = onp.arange(-(-n // size) * size) % n
    for i in range(0, len(order), size):
        x = legacy(images[order[i:i + size]]).as_in_context(X.context)
        yield like(x, X), min(size, n - i)


def classes_kept(net, reference, images, X):
    """The share of the pixels of `images` ((N, 3, H, W) NumPy) whose
    class `net` gives as `reference` does, in batches shaped like `X`."""
    kept = total = 0
    for x, real in batches_like(images, X):
        got, want = (host(m(x).argmax(axis=1))[:real]
                     for m in (net, reference))
        kept += int((got == want).sum())
        total += got.size
    return kept / total


def int8_body(body, head, X, calib_data):
    """`body` in int8 (`to_int8`, calibrated on `calib_data`, (N, 3, H, W)
    NumPy images), its residual
    sums fused into the convolutions where that keeps the class of
    `INT8_AGREEMENT` of the calibration images' pixels against float32,
    else in float32."""
    fused = to_int8(legacy_graph(body, X), X, calib_data)
    reference = fuse(legacy_graph(body, X), X)
    kept = classes_kept(InferenceFCN(fused, head, 'int8'),
                        InferenceFCN(reference, head, 'fp32'),
                        calib_data, X)
    if kept >= INT8_AGREEMENT:
        return fused
    return to_int8(legacy_graph(body, X, fused_sums=False), X, calib_data)


def sums_fused(net):
    """Whether the residual sums of an `InferenceFCN`'s body are fused
    into its convolutions (no addition of its own in the graph)."""
    with legacy_semantics():
        nodes = json.loads(cached_graph(net.body)[1].tojson())['nodes']
    return not any(n['op'] in ADDITIONS.values() for n in nodes)


def inference_net(net, X, precision='fp32', calib_data=None,
                  int8_cache=None):
    """`net` (from `build_fcn`) for forward passes in `precision` on
    batches shaped like `X`, as an `InferenceFCN`: its body converted and
    fused, its head in float32 (module docstring). int8 needs
    `calib_data`, a few training images (N, 3, H, W) as NumPy, an
    `NDArray` or an `mxnet.numpy` array, or a function returning them
    (`calibration_array`), unless the int8 body is found at the prefix
    `int8_cache`, where a new calibration is saved."""
    body, head = split_at_upsampler(net)
    head.hybridize(static_alloc=True, static_shape=True)
    graph = int8_cache and precision == 'int8' and \
        load_graph(int8_cache, X.context)
    with warnings.catch_warnings():  # AMP: "Cannot decide type for data"
        warnings.simplefilter('ignore', UserWarning)
        if not graph and precision == 'int8':
            if calib_data is None:
                raise FCNError('int8 inference needs calibration images '
                               '(calib_data)')
            graph = int8_body(body, head, X,
                              calibration_array(calib_data))
            if int8_cache:
                with legacy_semantics():  # the graph's flavour
                    export_graph(graph, int8_cache)
        elif not graph:
            graph = legacy_graph(body, X)
            graph = fuse(graph, X) if precision == 'fp32' else \
                to_bfloat16(graph, X)
    return InferenceFCN(graph, head, precision)


# the graph operators that compute a layer (fused by oneDNN or not)
LAYER_OPS = ('Convolution', 'FullyConnected', 'Deconvolution',
             '_sg_mkldnn_conv', '_sg_mkldnn_fully_connected')


def dtype_name(dtype):
    """'float32', 'int8', ..., 'bfloat16' (MXNet's is a NumPy record)."""
    dtype = onp.dtype(dtype)
    return dtype.names[0] if dtype.names else dtype.name


def layer_precisions(net):
    """[(graph node, dtype of its output)] of the layers (convolutions,
    fused or not, and fully connected ones) of a `InferenceFCN`, in
    order, then its float32 head's: 'bfloat16', 'uint8' / 'int8' (int8
    layers), or 'float32'."""
    with legacy_semantics():
        sym = cached_graph(net.body)[1]
        internals = sym.get_internals()
        types = dict(zip(internals.list_outputs(),
                         internals.infer_type(data='float32')[1]))
    rows = [(node['name'], dtype_name(types[node['name'] + '_output']))
            for node in json.loads(sym.tojson())['nodes']
            if node['op'] in LAYER_OPS]
    return rows + [(layer.name, 'float32')
                   for layer in child_blocks(net.head).values()]
