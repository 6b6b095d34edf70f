"""int8 calibration, or `precision='auto'`'s measurement, at the
chapter's size, as `optimize_for_inference` does it (issue 22): its time
and this process's peak memory.

    python benchmarks/bench_calibration.py [--mode legacy|numpy]
        [--calib numpy|NDArray|mxnet.numpy] [--images 16] [--crop 320,480]
        [--batch-size 1] [--precision int8|auto]

The chapter's net (resnet18_v2, random weights) is quantized to int8 on
`--images` random images of `--crop` given as `--calib`, in MXNet's
legacy or NumPy mode, for batches of `--batch-size` (1: as `predict` and
`evaluate` run). The time covers what a first `--precision int8` costs a
run: the calibration, the agreement passes against float32 and, where
the sums fused lose classes, the second calibration with them apart
(`sums_fused` says which). With `--precision auto`, all of that and the
bf16 net, and each net's rate on 8 of the images (`fast.auto`: random
weights, so the agreement means nothing, the rates do). One JSON line:
seconds, peak RSS in GB, the CPU, and auto's rates.
"""
import argparse
import json
import time

import gluon_fcn  # noqa: F401  (first: a thread a core, AMX where allowed)
import mxnet as mx
import numpy as onp
from mxnet import npx

from gluon_fcn.core.arrays import zeros
from gluon_fcn.core.model import build_fcn
from gluon_fcn.fast import optimize_for_inference
from gluon_fcn.fast.native import cpu_model
from gluon_fcn.fast.precision import sums_fused

from bench_fcn import peak_rss_kib  # this folder

CALIB_TYPES = {'numpy': lambda a: a, 'NDArray': mx.nd.array,
               'mxnet.numpy': mx.np.array}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--mode', choices=('legacy', 'numpy'), default='legacy')
    p.add_argument('--calib', choices=list(CALIB_TYPES), default='NDArray')
    p.add_argument('--images', type=int, default=16)
    p.add_argument('--crop', default='320,480')
    p.add_argument('--batch-size', type=int, default=1)
    p.add_argument('--precision', choices=('int8', 'auto'), default='int8')
    args = p.parse_args(argv)
    crop = tuple(int(v) for v in args.crop.split(','))
    if args.mode == 'numpy':
        npx.set_np()
    images = onp.random.RandomState(0).uniform(
        -2, 2, (args.images, 3) + crop).astype('float32')
    calib = CALIB_TYPES[args.calib](images)
    X = zeros((args.batch_size, 3) + crop)
    tic = time.perf_counter()
    net = optimize_for_inference(build_fcn(21), X,
                                 precision=args.precision, calib_data=calib)
    net(X).wait_to_read()
    seconds = time.perf_counter() - tic
    rates = net.choice and {p: round(r, 2)
                            for p, r in net.choice.rates.items()}
    print(json.dumps({'seconds': round(seconds, 1),
                      'peak_rss_gb': round(peak_rss_kib() / 2 ** 20, 2),
                      'sums_fused': args.precision == 'int8' and
                      sums_fused(net), 'rates': rates,
                      'cpu': cpu_model(), **vars(args)}))


if __name__ == '__main__':
    main()
