"""Gluon against the d2l PyTorch port, as written and tuned, on this CPU:
issue 5's and issue 14's benchmark table.

    python benchmarks/bench_fcn.py [--crop 320,480] [--batch-size 8]
        [--repeat 5] [--precision fp32,bf16,int8] [--run RUN]
        [--no-compile] [--no-rss] [--quick] [--out benchmarks/results]

Rates are medians over `--repeat` timed iterations after warm-up, with
the slowest and fastest iteration of all rounds beside them. Each
model runs alone in a subprocess, the models alternating over two rounds
in one run of this script (in one process, the idle OpenMP threads of
one framework spin while the other works and slow it down). The table
names the CPU, the units each precision runs on (AMX, AVX-512 BF16,
VNNI), what `--precision auto` picks, and the instruction set each
framework's oneDNN reports.
With `--run`, the bf16 and int8 rows get their accuracy against float32
on that run's validation images. Writes OUT.json and OUT.png;
benchmarks/README.md explains the numbers.
"""
import argparse
import contextlib
import datetime
import io
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import gluon_fcn  # noqa: F401  (first: a thread a core, AMX where allowed)
import mxnet as mx
import numpy as onp
from mxnet import autograd, gluon, np, npx

from gluon_fcn.core.dataset import SegDataset
from gluon_fcn.core.model import build_fcn, make_upsampler
from gluon_fcn.core.predict import predict_image
from gluon_fcn.core.synthetic import make_synthetic_voc
from gluon_fcn.core.training import PixelSoftmaxCELoss
from gluon_fcn.d2l import RGB_MEAN, RGB_STD
from gluon_fcn.fast import (accelerate, make_fused_loss, optimize_for_inference,
                            precision_units)
from gluon_fcn.fast.cpu import slower_than_fp32, this_cpu
from gluon_fcn.fast.mixed import use_bf16_convolutions
from gluon_fcn.fast.native import cpu_flags, cpu_model
from gluon_fcn.fast.precision import PRECISIONS, sums_fused
from gluon_fcn.fast.upsample import use_quadrant_split

NUM_CLASSES = 21
GFLOP_320x480 = 11.65  # one forward pass of the chapter's FCN, 320x480
CHAPTER = {'train_images': 1114, 'test_images': 1078, 'epochs': 5}
GOALS = {'train_ratio': 1.0, 'forward_ratio': 1.0, 'rss_ratio': 1.0,
         'over_fp32': 3.0, 'over_torch_bf16': 1.3, 'unchanged': 0.99,
         'forward_efficiency': 0.6, 'data_over_train': 5.0,
         # issue 22: on any CPU, the best reduced precision at least fp32;
         # with VNNI, int8 at least 2x; bf16 training 1.8x with AMX
         'reduced_over_fp32': 1.0, 'int8_vnni_over_fp32': 2.0,
         'bf16_train_amx': 1.8}
IMAGE_HW = (375, 500)  # the latency's image, a typical VOC size
NUM_CALIB = 16  # int8 calibration images (random here: speed only)

GLUON = 'gluon'
STATIC_ROW = 'gluon (static memory)'
CHAPTER_ROW = 'gluon (chapter layers)'
BF16_TRAIN_ROW = 'gluon (bf16 mixed training)'
AFTER_TRAINING = 'gluon (inference, fp32, after training)'
TORCH = 'pytorch (d2l port)'
TORCH_CL = 'pytorch channels_last'
TORCH_COMPILE = 'pytorch channels_last + compile'
TORCH_BF16 = 'pytorch bf16 autocast'
TORCH_BF16_COMPILE = 'pytorch bf16 autocast + compile'
# the PyTorch rows: (channels_last, torch.compile, bf16 autocast)
TORCH_ROWS = {TORCH: (False, False, False), TORCH_CL: (True, False, False),
              TORCH_COMPILE: (True, True, False),
              TORCH_BF16: (True, False, True),
              TORCH_BF16_COMPILE: (True, True, True)}


INT8_APART = 'gluon (inference, int8, sums apart)'


def inference_row(precision):
    return f'gluon (inference, {precision})'


def time_it(fn, repeat, warmup=2):
    """Seconds of each of `repeat` calls of `fn` after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return times


def gluon_net(name=GLUON):
    """(net, loss) as `gluon-fcn train` runs them: the chapter's layers
    with `accelerate` (the quadrant split), the fused loss, memory planned
    at each step. STATIC_ROW: the same with `--static-memory`. CHAPTER_ROW:
    the chapter's layers and loss through MXNet's operators, hybridized
    as before issue 5. BF16_TRAIN_ROW: `train --precision bf16`, the
    convolutions in bfloat16 (`fast.mixed`)."""
    net = build_fcn(NUM_CLASSES)
    if name == CHAPTER_ROW:
        net.hybridize()
        return net, PixelSoftmaxCELoss()
    accelerate(net)
    if name == BF16_TRAIN_ROW:
        use_bf16_convolutions(net)
    net.hybridize(static_alloc=name == STATIC_ROW)
    return net, make_fused_loss('d2l')


def forward_bench(net, X):
    """{'forward': pass, 'predict': one whole image} of a Gluon net."""
    img = np.random.randint(0, 256, size=IMAGE_HW + (3,)).astype('uint8')
    return {'forward': lambda: net(X).wait_to_read(),
            'predict': lambda: predict_image(
                net, img, mx.cpu()).wait_to_read()}


def gluon_bench(net, loss, X, y):
    """{'train': SGD step} and `forward_bench`."""
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.1, 'wd': 1e-3})

    def train():
        with autograd.record():
            l = loss(net(X), y)
        l.backward()
        trainer.step(X.shape[0])
        npx.waitall()  # the update too, not only the loss

    return {'train': train, **forward_bench(net, X)}


def after_training_bench(X, y, repeat, warmup):
    """`forward_bench` of the fused fp32 inference net made from the
    training net after its timed training steps, in one process, as a
    notebook runs: whether training leaves the process slower."""
    net, loss = gluon_net()
    time_it(gluon_bench(net, loss, X, y)['train'], repeat, warmup)
    return forward_bench(optimize_for_inference(net, X), X)


def inference_bench(X, precision, sums_apart=False):
    """`forward_bench` of the net `predict` and `evaluate` use:
    `optimize_for_inference` in `precision`. int8 with the residual sums
    fused in int8, or with `sums_apart` in float32: which one a trained
    run gets depends on its calibration (`fast.precision.int8_body`),
    meaningless with random weights and images, so both are timed."""
    from gluon_fcn.fast import precision as fast_precision
    fast_precision.INT8_AGREEMENT = 2.0 if sums_apart else 0.0
    calib = onp.random.uniform(-2, 2, (NUM_CALIB,) + X.shape[1:])
    net = optimize_for_inference(build_fcn(NUM_CLASSES), X,
                                 precision=precision,
                                 calib_data=calib.astype('float32'))
    return forward_bench(net, X)


def torch_bench(X, y, channels_last=False, compiled=False, bf16=False):
    """'train' (fp32 only), 'forward' and 'predict' of d2l's PyTorch FCN
    (resnet18 v1) on the CPU, optionally channels-last, through
    `torch.compile` and with the backbone and score convolution under
    bf16 autocast (the transposed convolution stays float32: autocast
    makes it 25x slower)."""
    import torch

    from gluon_fcn.compare import torch_port
    net = torch_port.d2l_fcn(NUM_CLASSES)
    X, y = torch_port.to_torch(X), torch_port.to_torch(y).long()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net, X = net.to(memory_format=layout), X.contiguous(memory_format=layout)
    trunk, upsampler = net[:-1], net[-1]

    def forward(x):
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            scores = trunk(x)
        return upsampler(scores.float())

    model = torch.compile(forward) if compiled else forward
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001,
                                weight_decay=1e-3)
    img = torch.randint(0, 256, IMAGE_HW + (3,), dtype=torch.uint8)
    mean, std = torch.tensor(RGB_MEAN), torch.tensor(RGB_STD)

    def train():
        net.train()
        optimizer.zero_grad()
        torch_port.d2l_loss(model(X), y).sum().backward()
        optimizer.step()

    @torch.no_grad()
    def run(x):
        net.eval()
        return model(x)

    def predict():  # as predict_image: normalise, pad to 32, crop back
        (h, w), x = IMAGE_HW, ((img / 255 - mean) / std).permute(2, 0, 1)
        x = torch.nn.functional.pad(x[None], (0, -w % 32, 0, -h % 32))
        run(x.contiguous(memory_format=layout))[0, :, :h, :w].argmax(dim=0)

    bench = {'forward': lambda: run(X), 'predict': predict}
    return bench if bf16 else {'train': train, **bench}


def model_child(name, crop, batch_size, repeat, warmup):
    """Time one model alone in this process and print {kind: seconds}
    as JSON: 'train', 'forward', 'predict' (whichever it has)."""
    X, y = random_batch(crop, batch_size)
    if name in TORCH_ROWS:
        bench = torch_bench(X, y, *TORCH_ROWS[name])
    elif name == AFTER_TRAINING:
        bench = after_training_bench(X, y, repeat, warmup)
    elif name.startswith('gluon (inference'):
        bench = inference_bench(X, name.split(', ')[1].rstrip(')'),
                                sums_apart=name == INT8_APART)
    else:
        bench = gluon_bench(*gluon_net(name), X, y)
    print(json.dumps({kind: time_it(fn, repeat, warmup)
                      for kind, fn in bench.items()}))


def child(flag, name, crop, batch_size, *extra):
    """This script with `flag name` in a subprocess: its last stdout line
    as JSON."""
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), flag, name, '--crop',
         ','.join(map(str, crop)), '--batch-size', str(batch_size),
         *extra], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def random_batch(crop, batch_size):
    X = np.random.uniform(size=(batch_size, 3) + crop)  # (B, 3, H, W)
    y = np.random.randint(0, NUM_CLASSES, size=(batch_size,) + crop)
    return X, y.astype('float32')  # (B, H, W)


def model_names(precisions, compiled=True, quick=False):
    """The rows this machine can run: Gluon's, an inference row per
    precision the CPU has units for, PyTorch's (bf16 where the CPU has
    bf16 units, compiled ones with `compiled`); with `quick`, the
    training net's, the inference rows and the port as written."""
    names = [GLUON] if quick else [GLUON, STATIC_ROW, CHAPTER_ROW]
    if 'bf16' in precisions and precision_units('bf16'):
        names.append(BF16_TRAIN_ROW)
    names += [inference_row(p) for p in precisions if precision_units(p)]
    if not quick:
        names.append(AFTER_TRAINING)
    if inference_row('int8') in names:
        names.append(INT8_APART)
    for name, (_, compiles, bf16) in TORCH_ROWS.items():
        if (compiled or not compiles) and \
                (not bf16 or precision_units('bf16')) and \
                (not quick or name == TORCH):
            names.append(name)
    return names


def model_rows(names, crop, batch_size, repeat, warmup, rounds=2):
    """{model: {'train', 'forward' (img/s), 'latency_s', and each with
    '_min' and '_max'}}. Each model runs alone in a subprocess (two
    frameworks' idle OpenMP teams in one process spin and slow each
    other), alternating over `rounds`; the median of the rounds' medians
    is kept, and the extremes of all their timed iterations."""
    times = {name: {} for name in names}
    for _ in range(rounds):
        for name in names:
            for kind, t in child('--model-child', name, crop, batch_size,
                                 '--repeat', str(repeat), '--warmup',
                                 str(warmup)).items():
                times[name].setdefault(kind, []).append(t)
    return {name: dict(row for kind, rounds_times in kinds.items()
                       for row in spread(kind, rounds_times, batch_size))
            for name, kinds in times.items()}


def spread(kind, rounds_times, batch_size):
    """[(key, value)]: the median of the rounds' medians, the slowest and
    the fastest iteration, as img/s (latency: seconds) for `kind`."""
    medians = [statistics.median(t) for t in rounds_times]
    every = [v for t in rounds_times for v in t]
    if kind == 'predict':
        return [('latency_s', statistics.median(medians)),
                ('latency_s_min', min(every)),
                ('latency_s_max', max(every))]
    return [(kind, batch_size / statistics.median(medians)),
            (f'{kind}_min', batch_size / max(every)),
            (f'{kind}_max', batch_size / min(every))]


def backward_ms(fn, x, repeat):
    """Milliseconds of fn(x) forward and backward (median)."""
    x = x.copy()
    x.attach_grad()

    def step():
        with autograd.record():
            out = fn(x)
        out.backward()
        npx.waitall()
    return 1e3 * statistics.median(time_it(step, repeat))


def component_rows(crop, batch_size, repeat):
    """{component: {'chapter_ms', 'gluon_fcn_ms'}}, forward + backward:
    the 32x upsampler (Conv2DTranspose against the quadrant split, same
    weights) and the loss (MXNet operators against the fused one)."""
    plain = make_upsampler(NUM_CLASSES, 32, mx.cpu())
    fast = make_upsampler(NUM_CLASSES, 32, mx.cpu())
    use_quadrant_split(fast)
    score = np.random.normal(  # (B, 21, H/32, W/32)
        size=(batch_size, NUM_CLASSES, crop[0] // 32, crop[1] // 32))
    X, y = random_batch(crop, batch_size)
    logits = np.random.normal(size=(batch_size, NUM_CLASSES) + crop)
    chapter_loss, fused_loss = PixelSoftmaxCELoss(), make_fused_loss('d2l')
    shape = 'x'.join(map(str, score.shape))
    return {f'upsampler 64/32, input {shape}': {
                'chapter_ms': backward_ms(plain, score, repeat),
                'gluon_fcn_ms': backward_ms(fast, score, repeat)},
            f'loss, logits {"x".join(map(str, logits.shape))}': {
                'chapter_ms': backward_ms(
                    lambda z: chapter_loss(z, y), logits, repeat),
                'gluon_fcn_ms': backward_ms(
                    lambda z: fused_loss(z, y), logits, repeat)}}


def matmul_gflops(repeat, n=4096):
    """{'torch', 'mxnet'}: GFLOP/s of an n x n float32 matrix product."""
    import torch
    A, B = torch.rand(n, n), torch.rand(n, n)
    a, b = np.random.uniform(size=(n, n)), np.random.uniform(size=(n, n))
    times = {'torch': statistics.median(
                 time_it(lambda: torch.mm(A, B), repeat, 1)),
             'mxnet': statistics.median(
                 time_it(lambda: np.dot(a, b).wait_to_read(), repeat, 1))}
    return {k: 2 * n ** 3 / t / 1e9 for k, t in times.items()}


def data_rate(crop, batch_size, repeat, num_images):
    """Images per second out of a DataLoader of the training crops."""
    with tempfile.TemporaryDirectory() as tmp, \
            contextlib.redirect_stdout(io.StringIO()):
        make_synthetic_voc(tmp, num_images, 8, sizes=(IMAGE_HW,),
                           progress=False)
        dataset = SegDataset(True, crop, tmp)
    loader = gluon.data.DataLoader(dataset, batch_size, shuffle=True,
                                   last_batch='discard')
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    return batch_size / statistics.median(time_it(
        lambda: next(batches)[0].wait_to_read(), repeat))


def peak_rss_kib():
    """This process's peak RSS in KiB: VmHWM, else ru_maxrss, which in a
    child starts at the parent's RSS at the fork (Linux)."""
    try:
        with open('/proc/self/status') as f:
            return int(f.read().split('VmHWM:')[1].split()[0])
    except (OSError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_child(which, crop, batch_size):
    """Two training steps; print the peak RSS (KiB) as JSON. The torch
    children import MXNet too (gluon_fcn.compare.torch_port does); the
    Gluon ones no torch."""
    if which in TORCH_ROWS:
        import torch  # noqa: F401  (counted in after_import)
    after_import = peak_rss_kib()
    X, y = random_batch(crop, batch_size)
    step = (torch_bench(X, y, *TORCH_ROWS[which]) if which in TORCH_ROWS
            else gluon_bench(*gluon_net(which), X, y))['train']
    step()
    step()
    print(json.dumps({'after_import_kib': after_import,
                      'peak_kib': peak_rss_kib()}))


def peak_rss_gb(which, crop, batch_size=32):
    """{'peak_rss_gb', 'import_rss_gb'} of `rss_child` in a subprocess."""
    kib = child('--peak-rss-child', which, crop, batch_size)
    return {'peak_rss_gb': kib['peak_kib'] / 2 ** 20,
            'import_rss_gb': kib['after_import_kib'] / 2 ** 20}


# one convolution, to make oneDNN print its info lines
ISA_PROBES = {
    'mxnet': ('import gluon_fcn, mxnet as mx\n'
              'x = mx.nd.ones((1, 16, 32, 32))\n'
              'w = mx.nd.ones((16, 16, 3, 3))\n'
              'mx.nd.Convolution(x, w, kernel=(3, 3), num_filter=16,\n'
              '                  no_bias=True).wait_to_read()\n'),
    'torch': ('import gluon_fcn, torch\n'  # small ones skip oneDNN
              'x = torch.ones(2, 64, 32, 32)\n'
              'x = x.contiguous(memory_format=torch.channels_last)\n'
              'torch.nn.functional.conv2d(x, torch.ones(64, 64, 3, 3))\n')}


def onednn_info(framework):
    """{'version', 'isa'}: what the oneDNN inside `framework` ('mxnet',
    'torch') prints about itself, run in a subprocess as the rows are
    (after `import gluon_fcn`, which lets MXNet's use AMX)."""
    env = dict(os.environ, DNNL_VERBOSE='1', MKLDNN_VERBOSE='1',
               ONEDNN_VERBOSE='1')
    try:
        out = subprocess.run([sys.executable, '-c', ISA_PROBES[framework]],
                             capture_output=True, text=True, env=env,
                             timeout=300).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    info = {}
    for line in out.splitlines():
        fields = line.split(',')
        if 'info' in fields and fields[-1].startswith('isa:'):
            info['isa'] = fields[-1][4:]
        elif 'info' in fields and fields[-1].startswith('oneDNN v'):
            info['version'] = fields[-1].split()[1]
    return info


def mxnet_threads():
    """MXNet's OpenMP threads as src/engine/openmp.cc picks them: its
    default on x86 is half the logical CPUs, and loading it sets that
    for torch in this process too (they share libgomp.so.1)."""
    for var in ('MXNET_OMP_MAX_THREADS', 'OMP_NUM_THREADS'):
        if var in os.environ:
            return f'{os.environ[var]} ({var})'
    return f'{max(1, os.cpu_count() // 2)} (default)'


UNIT_FLAGS = ('avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_bf16',
              'amx_int8')


def precision_paths():
    """The units each precision runs on here, whether AMX runs, and why
    bf16 is slower than fp32 where it is known to be (`fast.cpu`)."""
    return {'precision_units': {p: precision_units(p) for p in PRECISIONS},
            'amx': this_cpu().amx,
            'slower_than_fp32': slower_than_fp32('bf16')}


def machine():
    """CPU, cores, its bf16/int8 flags, each oneDNN's version and ISA,
    RAM, versions, threads, the load average and the date."""
    import torch
    flags = cpu_flags().split()
    ram = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    return {'cpu': cpu_model(),
            'cores': os.cpu_count(),
            'cpu_flags': [f for f in UNIT_FLAGS if f in flags],
            **precision_paths(),
            'mxnet_onednn': onednn_info('mxnet'),
            'torch_onednn': onednn_info('torch'),
            'ram_gb': round(ram / 2 ** 30, 1),
            'python': platform.python_version(), 'mxnet': mx.__version__,
            'torch': torch.__version__, 'numpy': onp.__version__,
            'torch_threads': torch.get_num_threads(),
            'mxnet_omp_threads': mxnet_threads(),
            'load_average': [round(v, 2) for v in os.getloadavg()],
            'date': datetime.datetime.now().isoformat(timespec='seconds')}


def accuracy_rows(run_dir, precisions):
    """{precision: evaluate --precision's comparison with float32} on the
    run's validation images (whole images, its labels)."""
    from gluon_fcn.app.inference import evaluate_run
    from gluon_fcn.app.config import TrainConfig
    config = TrainConfig.from_json(os.path.join(run_dir, 'config.json'))
    rows = {}
    for p in precisions:
        if p != 'fp32' and precision_units(p):
            against = evaluate_run(
                run_dir, config.data, config.data_dir, labels=config.labels,
                precision=p)['against_reference']
            rows[p] = {k: against[k] for k in (
                'changed_pixels', 'pixel_acc_delta', 'mean_iou_delta')}
    if 'int8' in rows:  # which int8 net the run's calibration chose
        from gluon_fcn.app.loading import load_run
        rows['int8']['sums_fused'] = sums_fused(
            load_run(run_dir, precision='int8')[0])
    return rows


def auto_pick(rows, run_dir=None):
    """What `--precision auto` picks: on `run_dir`, its choice (measured
    as `gluon-fcn` measures it, or kept in RUN/auto.json); without a run,
    the fastest inference row, by speed alone."""
    if run_dir:
        from gluon_fcn.app.loading import load_run
        choice = load_run(run_dir, precision='auto')[0].choice
        return choice and choice.to_dict()
    rates = {p: rows[inference_row(p)]['forward'] for p in PRECISIONS
             if 'forward' in rows.get(inference_row(p), {})}
    return rates and {'precision': max(rates, key=rates.get),
                      'rates': rates, 'kept': None}


def precision_lines(m, auto):
    """The CPU's bf16 / int8 / AMX paths and what `auto` picks."""
    units = m['precision_units']
    paths = '; '.join(f'{p} on {units[p] or "no units: fp32"}'
                      for p in PRECISIONS)
    lines = [f'precision paths: {paths}; AMX '
             f'{"on" if m["amx"] else "off"}' +
             (f'; {m["slower_than_fp32"]}' if m['slower_than_fp32']
              else '')]
    if not auto:
        return lines + ['auto: not measured (no inference rows)']
    p = auto['precision']
    rate = f'{auto["rates"][p]:.1f} img/s'
    if auto['kept'] is None:
        return lines + [f'auto: {p} by speed alone ({rate}; the share of '
                        'pixels kept needs --run)']
    return lines + [f'auto: {p} on the run ({rate}, '
                    f'{auto["kept"][p]:.1%} of the calibration pixels in '
                    'their fp32 class)']


def best(rows, names, kind):
    """The highest `kind` rate among the rows `names` that have it."""
    values = [rows[n][kind] for n in names if kind in rows.get(n, {})]
    return max(values) if values else None


def ratio(a, b):
    return a / b if a and b else None


def summary(rows, matmul, data_img_s, crop, accuracy=None):
    """Ratios: Gluon's training net and fused fp32 inference against the
    best PyTorch fp32 rows (and the port as written), bf16 and int8
    against Gluon fp32 and PyTorch's best bf16, peak RSS against
    PyTorch's; forward efficiency against the faster matmul, data /
    train, the chapter's time."""
    gluon, fused = rows[GLUON], rows.get(inference_row('fp32'), {})
    torch_fp32 = [n for n, (_, _, bf16) in TORCH_ROWS.items() if not bf16]
    torch_bf16 = best(rows, [TORCH_BF16, TORCH_BF16_COMPILE], 'forward')
    gflop = GFLOP_320x480 * crop[0] * crop[1] / (320 * 480)
    c = CHAPTER
    # the chapter tests with the training net after each epoch
    seconds = (c['train_images'] * c['epochs'] / gluon['train'] +
               c['test_images'] * c['epochs'] / gluon['forward'])
    torch_rss = [rows[n]['peak_rss_gb'] for n in torch_fp32
                 if 'peak_rss_gb' in rows.get(n, {})]
    s = {'train_ratio': ratio(gluon['train'],
                              best(rows, torch_fp32, 'train')),
         'train_ratio_as_written': ratio(gluon['train'],
                                         rows[TORCH]['train']),
         'forward_ratio': ratio(fused.get('forward'),
                                best(rows, torch_fp32, 'forward')),
         'forward_ratio_as_written': ratio(fused.get('forward'),
                                           rows[TORCH]['forward']),
         'rss_ratio': ratio(gluon.get('peak_rss_gb'),
                            min(torch_rss, default=None)),
         'forward_efficiency': ratio(gflop * fused.get('forward', 0),
                                     max(matmul.values())),
         'data_over_train': data_img_s / gluon['train'],
         'chapter_minutes': seconds / 60}
    int8_apart = not (accuracy or {}).get('int8', {}).get('sums_fused', True)
    for p in ('bf16', 'int8'):  # int8: the net the run chose, else fused
        row = INT8_APART if p == 'int8' and int8_apart else inference_row(p)
        forward = rows.get(row, {}).get('forward')
        s[f'{p}_over_fp32'] = ratio(forward, fused.get('forward'))
        s[f'{p}_over_torch_bf16'] = ratio(forward, torch_bf16)
    reduced = [s[f'{p}_over_fp32'] for p in ('bf16', 'int8')
               if s[f'{p}_over_fp32']]
    s['best_reduced_over_fp32'] = max(reduced, default=None)
    bf16_train = rows.get(BF16_TRAIN_ROW, {})
    s['bf16_train_over_fp32'] = ratio(bf16_train.get('train'),
                                      gluon['train'])
    s['bf16_train_rss_ratio'] = ratio(bf16_train.get('peak_rss_gb'),
                                      gluon.get('peak_rss_gb'))
    s['after_training_over_fresh'] = ratio(
        rows.get(AFTER_TRAINING, {}).get('forward'), fused.get('forward'))
    return s


def cell(value, fmt):
    return '-' if value is None else format(value, fmt)


def spread_cell(row, key, fmt):
    """'median (min-max)' of `key` in `row`, or '-'."""
    if key not in row:
        return '-'
    low, high = sorted((row[f'{key}_min'], row[f'{key}_max']))
    return (f'{format(row[key], fmt)} ({format(low, fmt)}-'
            f'{format(high, fmt)})')


def reduced_goals(m):
    """{precision: the forward goal over fp32 on this CPU} (issue 22): 3x
    with AMX; int8 2x with VNNI; else the best of them at least 1x."""
    amx = m['amx']
    vnni = any(f in m['cpu_flags'] for f in ('avx512_vnni', 'avx_vnni'))
    return {'bf16': GOALS['over_fp32'] if amx else None,
            'int8': GOALS['over_fp32'] if amx else
            GOALS['int8_vnni_over_fp32'] if vnni else None}


def goal_lines(s, accuracy, m):
    """A line per goal of issues 5, 14 and 22: the figure and the goal
    on this CPU."""
    g, goals = GOALS, reduced_goals(m)
    lines = [
        f'train: gluon / best pytorch fp32 {cell(s["train_ratio"], ".2f")}x'
        f' (goal >= {g["train_ratio"]}), / the port as written '
        f'{cell(s["train_ratio_as_written"], ".2f")}x',
        f'forward: gluon fp32 / best pytorch fp32 '
        f'{cell(s["forward_ratio"], ".2f")}x (goal >= '
        f'{g["forward_ratio"]}), / the port as written '
        f'{cell(s["forward_ratio_as_written"], ".2f")}x',
        f'peak RSS at batch 32: gluon / least pytorch '
        f'{cell(s["rss_ratio"], ".2f")}x (goal <= {g["rss_ratio"]})']
    for p in ('bf16', 'int8'):
        acc = accuracy.get(p)
        unchanged = cell(acc and 1 - acc['changed_pixels'], '.2%')
        sums = '' if p == 'bf16' else ' (sums apart)' if acc and not \
            acc['sums_fused'] else ' (sums fused)'
        goal = goals[p]
        torch_goal = (f' (goal >= {g["over_torch_bf16"]})' if m['amx']
                      else '')
        lines.append(
            f'{p}{sums}: / gluon fp32 {cell(s[f"{p}_over_fp32"], ".2f")}x' +
            (f' (goal >= {goal})' if goal else '') + ', / best pytorch '
            f'bf16 {cell(s[f"{p}_over_torch_bf16"], ".2f")}x{torch_goal}; '
            f'pixels unchanged {unchanged} (goal >= {g["unchanged"]:.0%})'
            + ('' if not acc else
               f', pixel acc {acc["pixel_acc_delta"]:+.4f}, mean IoU '
               f'{acc["mean_iou_delta"]:+.4f}'))
    lines.append(f'best reduced precision forward / gluon fp32 '
                 f'{cell(s["best_reduced_over_fp32"], ".2f")}x (goal >= '
                 f'{g["reduced_over_fp32"]}, any CPU)')
    train_goal = (f'goal >= {g["bf16_train_amx"]}' if m['amx'] else
                  'the goal is for AMX; none here')
    lines.append(f'bf16 mixed training / gluon fp32 training '
                 f'{cell(s["bf16_train_over_fp32"], ".2f")}x ({train_goal})'
                 f'; peak RSS at batch 32 / fp32 '
                 f'{cell(s["bf16_train_rss_ratio"], ".2f")}x (goal <= 1)')
    lines.append(f'fused fp32 forward after training, one process / fresh '
                 f'process {cell(s["after_training_over_fresh"], ".2f")}x')
    return lines


def format_report(r):
    """The machine, the table, the components, and each goal, as
    printed."""
    s, g, mm, m = r['summary'], GOALS, r['matmul_gflops'], r['machine']
    crop, batch = r['settings']['crop'], r['settings']['batch_size']
    lines = [f'CPU: {m["cpu"]}, {m["cores"]} CPUs, '
             f'{", ".join(m["cpu_flags"]) or "no AVX-512"}; load average '
             f'{m["load_average"][0]} at the start']
    lines += precision_lines(m, r.get('auto'))
    for fw in ('mxnet', 'torch'):
        info = m[f'{fw}_onednn']
        lines.append(f'{fw} oneDNN {info.get("version", "?")}: '
                     f'{info.get("isa", "no info line")}')
    lines += ['', (f'| {crop[0]}x{crop[1]}, batch {batch} | train img/s | '
                   'forward img/s | latency s | peak RSS GB, batch 32 |'),
              '|---|---|---|---|---|']
    for name, row in r['models'].items():
        cells = [spread_cell(row, k, f)
                 for k, f in (('train', '.2f'), ('forward', '.2f'),
                              ('latency_s', '.3f'))]
        cells.append(cell(row.get('peak_rss_gb'), '.2f'))
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    lines.append('(median, and the slowest and fastest iteration)')
    lines += ['', '| forward + backward | chapter ms | gluon-fcn ms | '
              'speed-up |', '|---|---|---|---|']
    for name, c in r['components'].items():
        lines.append(f'| {name} | {c["chapter_ms"]:.1f} | '
                     f'{c["gluon_fcn_ms"]:.1f} | '
                     f'{c["chapter_ms"] / c["gluon_fcn_ms"]:.1f}x |')
    lines += [''] + goal_lines(s, r['accuracy'], m)
    lines.append(f'matmul {r["settings"]["matmul_n"]}^2 fp32: torch '
                 f'{mm["torch"]:.1f}, mxnet '
                 f'{mm["mxnet"]:.1f} GFLOP/s; gluon fp32 forward at '
                 f'{cell(s["forward_efficiency"], ".0%")} of the faster '
                 f'(goal >= {g["forward_efficiency"]:.0%})')
    lines.append(f'data pipeline: {r["data_img_s"]:.1f} img/s = '
                 f'{s["data_over_train"]:.1f}x gluon train '
                 f'(goal >= {g["data_over_train"]}x)')
    lines.append('the chapter (5 epochs of 1114 train + 1078 test images):'
                 f' {s["chapter_minutes"]:.1f} min')
    lines.append('machine: ' + ', '.join(
        f'{k} {v}' for k, v in m.items() if k not in (
            'cpu', 'cpu_flags', 'mxnet_onednn', 'torch_onednn',
            'precision_units', 'amx', 'slower_than_fp32')))
    return '\n'.join(lines)


def save_chart(result, path):
    """Grouped bars of train and forward img/s per model."""
    from gluon_fcn.app import figures  # matplotlib: not in the children
    names, m = list(result['models']), result['machine']
    fig, ax = figures.subplots(figsize=(max(6, 1.3 * len(names)), 3.6))
    x = onp.arange(len(names))
    for k, kind in enumerate(('train', 'forward')):
        values = [result['models'][n].get(kind, 0) for n in names]
        bars = ax.bar(x + (k - 0.5) * 0.4, values, 0.4, label=kind)
        ax.bar_label(bars, fmt='%.1f', fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(names, fontsize=7, rotation=30, ha='right')
    crop, batch = result['settings']['crop'], result['settings']['batch_size']
    ax.set_ylabel(f'img/s ({crop[0]}x{crop[1]}, batch {batch})')
    ax.legend(loc='upper left', bbox_to_anchor=(1, 1))
    ax.set_title(f'gluon-fcn and the d2l PyTorch port on {m["cpu"]}',
                 fontsize=9)
    fig.savefig(path, format='png', dpi=100, bbox_inches='tight')


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                allow_abbrev=False)
    p.add_argument('--crop', help='height,width (default 320,480; '
                   '64,96 with --quick)')
    p.add_argument('--batch-size', type=int,
                   help='default 8 (2 with --quick)')
    p.add_argument('--repeat', type=int, default=5)
    p.add_argument('--precision', default='fp32,bf16,int8',
                   help="the Gluon inference rows' precisions, of "
                   'fp32,bf16,int8 (those the CPU has units for)')
    p.add_argument('--run', help='a trained run: the bf16 and int8 '
                   'accuracy against fp32 on its validation images')
    p.add_argument('--no-compile', action='store_true',
                   help='skip the torch.compile rows (minutes to compile)')
    p.add_argument('--no-rss', action='store_true',
                   help='skip the batch-32 peak RSS subprocesses')
    p.add_argument('--quick', action='store_true',
                   help='a smoke run (speeds mean nothing): 1 repeat, 1 '
                   'round, a small crop, fewer rows, no RSS')
    p.add_argument('--out', default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'results'),
        help='writes OUT.json and OUT.png')
    p.add_argument('--peak-rss-child', help=argparse.SUPPRESS)
    p.add_argument('--model-child', help=argparse.SUPPRESS)
    p.add_argument('--warmup', type=int, default=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.crop = tuple(int(v) for v in (
        args.crop or ('64,96' if args.quick else '320,480')).split(','))
    args.batch_size = args.batch_size or (2 if args.quick else 8)
    args.precision = [v.strip() for v in args.precision.split(',')]
    unknown = set(args.precision) - {'fp32', 'bf16', 'int8'}
    if unknown or 'fp32' not in args.precision:
        p.error(f'--precision {",".join(args.precision)}: give fp32 and '
                'any of bf16, int8')
    return args


def main(argv=None):
    args = parse_args(argv)
    npx.set_np()  # as the command line runs
    if args.peak_rss_child:
        return rss_child(args.peak_rss_child, args.crop, args.batch_size)
    if args.model_child:
        return model_child(args.model_child, args.crop, args.batch_size,
                           args.repeat, args.warmup)
    quick = args.quick
    repeat = 1 if quick else args.repeat
    warmup = 1 if quick else args.warmup
    matmul_n = 1024 if quick else 4096
    result = {'machine': machine(),
              'settings': {'crop': list(args.crop),
                           'batch_size': args.batch_size,
                           'repeat': repeat, 'warmup': warmup,
                           'num_classes': NUM_CLASSES,
                           'precisions': args.precision,
                           'matmul_n': matmul_n,
                           'command': ' '.join(sys.argv)}}
    rss = {} if args.no_rss or quick else {  # first, while this is small
        name: peak_rss_gb(name, args.crop)
        for name in (GLUON, STATIC_ROW, CHAPTER_ROW, TORCH, TORCH_CL) +
        ((BF16_TRAIN_ROW,) if precision_units('bf16') else ())}
    names = model_names(args.precision, not args.no_compile, quick)
    rows = model_rows(names, args.crop, args.batch_size, repeat, warmup,
                      rounds=1 if quick else 2)
    for name, row in rss.items():
        rows[name].update(row)
    components = component_rows(args.crop, args.batch_size, repeat)
    matmul = matmul_gflops(1 if quick else 3, matmul_n)
    data_img_s = data_rate(args.crop, args.batch_size, repeat * 4,
                           8 if quick else 64)
    accuracy = accuracy_rows(args.run, args.precision) if args.run else {}
    result['auto'] = auto_pick(rows, args.run)
    result.update(
        models=rows, components=components, matmul_gflops=matmul,
        data_img_s=data_img_s, accuracy=accuracy,
        summary=summary(rows, matmul, data_img_s, args.crop, accuracy),
        goals=GOALS)
    print(format_report(result))
    with open(args.out + '.json', 'w') as f:
        json.dump(result, f, indent=2)
        f.write('\n')
    save_chart(result, args.out + '.png')


if __name__ == '__main__':
    main()
