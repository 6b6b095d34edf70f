"""onnxruntime beside MXNet: one forward pass of the chapter's FCN (issue
15's benchmark row).

    python benchmarks/bench_export.py [--crop 320,480] [--batch-size 8]
        [--repeat 5] [--head 32s]

The net (resnet18_v2, random weights) is exported at a fixed shape,
(batch, 3, H, W), as `gluon-fcn export --format onnx` writes it, and run
by onnxruntime on the CPU; MXNet runs the same weights as `predict` does
(`optimize_for_inference`: native operators, oneDNN fusion). Rates are
medians of `--repeat` timed passes after two warm-up passes; both
runtimes use every core.
"""
import argparse
import json
import os
import platform
import statistics
import tempfile
import timeit

import gluon_fcn  # noqa: F401  (first: a thread a core)
import mxnet as mx
import numpy as onp
import onnxruntime
from mxnet import npx

from gluon_fcn.core.arrays import array, legacy_mode
from gluon_fcn.core.checkpoint import save_params
from gluon_fcn.core.model import build_fcn
from gluon_fcn.fast import accelerate, optimize_for_inference
from gluon_fcn.fast.export import OnnxNet, export_onnx, max_relative_error


def median_seconds(fn, repeat, warmup=2):
    """Median wall time of `repeat` calls of `fn` after `warmup` calls."""
    timeit.repeat(fn, repeat=warmup, number=1)
    return statistics.median(timeit.repeat(fn, repeat=repeat, number=1))


def export_rows(crop=(320, 480), batch_size=8, repeat=5, head='32s'):
    """[{'name', 'forward_ms', 'images_per_sec'}] of MXNet and
    onnxruntime on one batch of `batch_size` images of `crop`, and the
    largest relative error between their logits."""
    X = onp.random.RandomState(0).standard_normal(
        (batch_size, 3) + tuple(crop)).astype('float32')
    with tempfile.TemporaryDirectory() as tmp:
        params = os.path.join(tmp, 'fcn.params')
        onnx_path = os.path.join(tmp, 'fcn.onnx')
        mx.random.seed(0)
        with legacy_mode():
            net = accelerate(build_fcn(21, head=head))
            save_params(net, params)
            export_onnx(net, onnx_path, crop, batch_size=batch_size)
        ort_net = OnnxNet(onnx_path)
        net = accelerate(build_fcn(21, head=head))
        net.load_parameters(params)
        X_mx = array(X)
        optimize_for_inference(net, X_mx)
        seconds = {
            'mxnet (predict: native ops, oneDNN fusion)': median_seconds(
                lambda: net(X_mx).wait_to_read(), repeat),
            f'onnxruntime {onnxruntime.__version__} (CPU)': median_seconds(
                lambda: ort_net.session.run(None, {ort_net.input_name: X}),
                repeat)}
        error = max_relative_error(ort_net(X_mx), net(X_mx))
    rows = [{'name': name, 'forward_ms': 1e3 * s,
             'images_per_sec': batch_size / s} for name, s in seconds.items()]
    return rows, error


def cpu_name():
    """The CPU's model name (/proc/cpuinfo), or what platform knows."""
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--crop', default='320,480')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--repeat', type=int, default=5)
    p.add_argument('--head', default='32s', choices=('32s', '16s', '8s'))
    args = p.parse_args(argv)
    npx.set_np()  # as the CLI runs
    crop = tuple(int(v) for v in args.crop.split(','))
    rows, error = export_rows(crop, args.batch_size, args.repeat, args.head)
    print(f'{cpu_name()}, {os.cpu_count()} logical CPUs; FCN-{args.head} '
          f'forward, batch {args.batch_size} of {crop[0]}x{crop[1]}:')
    for row in rows:
        print(f'  {row["name"]:45s} {row["forward_ms"]:8.1f} ms '
              f'{row["images_per_sec"]:6.1f} img/s')
    print(f'  max relative error onnxruntime vs MXNet: {error:.1e}')
    print(json.dumps({'rows': rows, 'max_relative_error': error}))


if __name__ == '__main__':
    main()
