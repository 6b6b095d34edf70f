"""Throughput of the chapter's FCN on this machine: a table and a JSON file.

    python benchmarks/bench_fcn.py [--crop 320,480] [--batch-size 8]

Measures, after warm-up, the median over `--repeat` timed batches of
- a training step (forward, backward, SGD update) and a forward pass,
  eager and hybridized (static_alloc, static_shape);
- the data pipeline (VOCSegDataset random crops through a DataLoader).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import mxnet as mx
from mxnet import autograd, gluon, np

import gluon_fcn  # noqa: F401  (NumPy mode)
from gluon_fcn.data import VOCSegDataset
from gluon_fcn.model import build_fcn
from gluon_fcn.synthetic import make_synthetic_voc


def time_it(fn, repeat, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def model_rates(crop, batch_size, hybridize, repeat):
    """(train img/s, forward img/s) of the chapter's 21-class FCN."""
    net = build_fcn()
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    loss = gluon.loss.SoftmaxCrossEntropyLoss(axis=1)
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.1, 'wd': 1e-3})
    X = np.random.uniform(size=(batch_size, 3) + crop)
    y = np.random.randint(0, 21, size=(batch_size,) + crop).astype('float32')

    def step():
        with autograd.record():
            l = loss(net(X), y)
        l.backward()
        trainer.step(batch_size)
        l.wait_to_read()

    def forward():
        net(X).wait_to_read()

    return (batch_size / time_it(step, repeat),
            batch_size / time_it(forward, repeat))


def data_rate(crop, batch_size, repeat):
    """Images per second out of a DataLoader of VOCSegDataset crops."""
    with tempfile.TemporaryDirectory() as tmp:
        sizes = ((375, 500),)
        make_synthetic_voc(tmp, 64, 8, sizes=sizes, progress=False)
        dataset = VOCSegDataset(True, crop, tmp)
        loader = gluon.data.DataLoader(dataset, batch_size, shuffle=True,
                                       last_batch='discard')
        batches = iter(())

        def next_batch():
            nonlocal batches
            try:
                X, _ = next(batches)
            except StopIteration:
                batches = iter(loader)
                X, _ = next(batches)
            X.wait_to_read()

        return batch_size / time_it(next_batch, repeat)


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            names = [line.split(':', 1)[1].strip() for line in f
                     if line.startswith('model name')]
        cpu = f'{names[0]} x {len(names)}' if names else cpu
    except OSError:
        pass
    return {'cpu': cpu, 'cores': os.cpu_count(), 'mxnet': mx.__version__,
            'python': sys.version.split()[0]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--crop', default='320,480')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--repeat', type=int, default=5)
    p.add_argument('--json', default=os.path.join(
        os.path.dirname(__file__), 'results.json'))
    args = p.parse_args(argv)
    crop = tuple(int(v) for v in args.crop.split(','))
    rows = []
    for hybridize in (False, True):
        train, fwd = model_rates(crop, args.batch_size, hybridize,
                                 args.repeat)
        mode = 'hybridized' if hybridize else 'eager'
        rows += [(f'train step, {mode}', train), (f'forward, {mode}', fwd)]
    rows.append(('data pipeline (1 process)',
                 data_rate(crop, args.batch_size, args.repeat * 4)))
    result = {'machine': machine(), 'crop': list(crop),
              'batch_size': args.batch_size,
              'img_per_sec': {name: round(v, 2) for name, v in rows}}
    print(f'| {crop[0]}x{crop[1]}, batch {args.batch_size} | img/s |')
    print('|---|---|')
    for name, v in rows:
        print(f'| {name} | {v:.2f} |')
    print(f'machine: {result["machine"]}')
    with open(args.json, 'w') as f:
        json.dump(result, f, indent=2)
        f.write('\n')


if __name__ == '__main__':
    main()
