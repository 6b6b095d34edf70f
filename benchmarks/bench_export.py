"""onnxruntime beside MXNet: one forward pass of the chapter's FCN (issue
15's benchmark row).

    python benchmarks/bench_export.py [--crop 320,480] [--batch-size 8]
        [--repeat 5] [--head 32s]

The net (resnet18_v2, random weights) is exported at a fixed shape,
(batch, 3, H, W), as `gluon-fcn export --format onnx` writes it, and run
by onnxruntime on the CPU; MXNet runs the same weights as `predict` does
(`optimize_for_inference`: native operators, oneDNN fusion). Each
runtime is timed alone in a subprocess; rates are medians of `--repeat`
timed passes after two warm-up passes; both runtimes use every core.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import gluon_fcn  # noqa: F401  (first: a thread a core)
import mxnet as mx
import numpy as onp
import onnxruntime
from mxnet import npx

from gluon_fcn.core.arrays import array, legacy_semantics
from gluon_fcn.core.checkpoint import save_params
from gluon_fcn.core.model import build_fcn
from gluon_fcn.fast import accelerate, optimize_for_inference
from gluon_fcn.fast.portable import OnnxNet, export_onnx, max_relative_error
from gluon_fcn.fast.native import cpu_model

from bench_fcn import time_it  # this folder: the same timer as the table


MXNET_ROW = 'mxnet (predict: native ops, oneDNN fusion)'
RUNTIMES = ('mxnet', 'onnxruntime')


def time_runtime(runtime, folder, repeat):
    """In this process: load the net `export_files` wrote to `folder` in
    `runtime`, time its forward pass on the saved batch, save its logits
    beside; returns the row's name and the median seconds."""
    X = onp.load(os.path.join(folder, 'X.npy'))
    if runtime == 'onnxruntime':
        ort_net = OnnxNet(os.path.join(folder, 'fcn.onnx'))
        feed = {ort_net.input_name: X}
        name = f'onnxruntime {onnxruntime.__version__} (CPU)'
        forward = logits = lambda: ort_net.session.run(  # noqa: E731
            None, feed)[0]
    else:
        with open(os.path.join(folder, 'head.txt')) as f:
            head = f.read()
        net = accelerate(build_fcn(21, head=head))
        net.load_parameters(os.path.join(folder, 'fcn.params'))
        X_mx = array(X)
        net = optimize_for_inference(net, X_mx)
        name = MXNET_ROW
        forward = lambda: net(X_mx).wait_to_read()  # noqa: E731
        logits = lambda: net(X_mx).asnumpy()  # noqa: E731
    onp.save(os.path.join(folder, f'{runtime}.npy'), logits())
    return name, statistics.median(time_it(forward, repeat))


def export_files(folder, crop, batch_size, head):
    """Random weights saved and exported to ONNX at a fixed shape, and a
    random batch, in `folder`."""
    mx.random.seed(0)
    onp.save(os.path.join(folder, 'X.npy'), onp.random.RandomState(
        0).standard_normal((batch_size, 3) + tuple(crop)).astype('float32'))
    with open(os.path.join(folder, 'head.txt'), 'w') as f:
        f.write(head)
    with legacy_semantics():
        net = accelerate(build_fcn(21, head=head))
        save_params(net, os.path.join(folder, 'fcn.params'))
        export_onnx(net, os.path.join(folder, 'fcn.onnx'), crop,
                    batch_size=batch_size)


def export_rows(crop=(320, 480), batch_size=8, repeat=5, head='32s',
                rounds=2):
    """[{'name', 'forward_ms', 'images_per_sec'}] of MXNet and
    onnxruntime on one batch of `batch_size` images of `crop`, and the
    largest relative error between their logits. Each runtime is timed
    alone in a subprocess (the idle threads of one would slow the other),
    the two alternating over `rounds`; the median of the rounds is kept."""
    times = {}
    with tempfile.TemporaryDirectory() as folder:
        export_files(folder, crop, batch_size, head)
        for runtime in RUNTIMES * rounds:
            out = subprocess.run(
                [sys.executable, __file__, '--child', runtime, folder,
                 '--repeat', str(repeat)], check=True, text=True,
                stdout=subprocess.PIPE).stdout
            name, seconds = json.loads(out.splitlines()[-1])
            times.setdefault(name, []).append(seconds)
        rows = [{'name': name, 'forward_ms': 1e3 * statistics.median(t),
                 'images_per_sec': batch_size / statistics.median(t)}
                for name, t in times.items()]
        error = max_relative_error(
            *(onp.load(os.path.join(folder, f'{r}.npy'))
              for r in reversed(RUNTIMES)))
    return rows, error


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                allow_abbrev=False)
    p.add_argument('--crop', default='320,480')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--repeat', type=int, default=5)
    p.add_argument('--head', default='32s', choices=('32s', '16s', '8s'))
    p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--child', nargs=2, metavar=('RUNTIME', 'FOLDER'),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    npx.set_np()  # as the CLI runs
    if args.child:
        print(json.dumps(time_runtime(*args.child, args.repeat)))
        return
    crop = tuple(int(v) for v in args.crop.split(','))
    rows, error = export_rows(crop, args.batch_size, args.repeat, args.head,
                              args.rounds)
    print(f'{cpu_model()}, {os.cpu_count()} logical CPUs; FCN-{args.head} '
          f'forward, batch {args.batch_size} of {crop[0]}x{crop[1]}:')
    for row in rows:
        print(f'  {row["name"]:45s} {row["forward_ms"]:8.1f} ms '
              f'{row["images_per_sec"]:6.1f} img/s')
    print(f'  max relative error onnxruntime vs MXNet: {error:.1e}')
    print(json.dumps({'rows': rows, 'max_relative_error': error}))


if __name__ == '__main__':
    main()
