"""Gluon vs the d2l PyTorch port on this CPU: issue 5's benchmark table.

    python benchmarks/bench_fcn.py [--crop 320,480] [--batch-size 8]
        [--repeat 5] [--quick] [--no-rss] [--out benchmarks/results]

Rates are medians over `--repeat` timed iterations after warm-up. Each
model runs alone in a subprocess, the four alternating over two rounds
in one run of this script (in one process, the idle OpenMP threads of
one framework spin while the other works and slow it down).
Writes OUT.json and OUT.png; benchmarks/README.md explains the numbers.
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

import gluon_fcn  # noqa: F401  (first: NumPy mode, a thread a core)
import mxnet as mx
import numpy as onp
from mxnet import autograd, gluon, np, npx

from gluon_fcn import model, viz
from gluon_fcn.data import RGB_MEAN, RGB_STD, VOCSegDataset
from gluon_fcn.predict import predict_image
from gluon_fcn.synthetic import make_synthetic_voc
from gluon_fcn.train import make_loss, pixel_nll
from gluon_fcn.upsample import use_quadrant_split

NUM_CLASSES = 21
GFLOP_320x480 = 11.65  # one forward pass of the chapter's FCN, 320x480
CHAPTER = {'train_images': 1114, 'test_images': 1078, 'epochs': 5}
GOALS = {'train_ratio': 1.0, 'forward_ratio': 1.2,
         'forward_efficiency': 0.6, 'data_over_train': 5.0}
IMAGE_HW = (375, 500)  # the latency's image, a typical VOC size
TORCH = 'pytorch (d2l port)'


def time_it(fn, repeat, warmup=2):
    """Median seconds of `repeat` calls of `fn` after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


CHAPTER_ROW = 'gluon (chapter layers)'


def gluon_net(name='gluon'):
    """(net, loss) as `gluon-fcn train` runs them: `build_fcn`'s quadrant
    split, the fused loss, static memory. CHAPTER_ROW: the literal
    chapter layers and the loss through MXNet's operators, hybridized as
    before issue 5."""
    if name == CHAPTER_ROW:
        net = model.build_fcn(NUM_CLASSES, chapter_layers=True)
        net.hybridize()
        return net, pixel_nll
    net = model.build_fcn(NUM_CLASSES)
    net.hybridize(static_alloc=True)
    return net, make_loss('d2l')


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


def torch_bench(X, y):
    """The same three for d2l's PyTorch FCN (resnet18 v1) on the CPU."""
    import torch

    from gluon_fcn import torch_port
    net = torch_port.d2l_fcn(NUM_CLASSES)
    X, y = torch_port.to_torch(X), torch_port.to_torch(y).long()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001,
                                weight_decay=1e-3)
    img = torch.randint(0, 256, IMAGE_HW + (3,), dtype=torch.uint8)
    mean, std = torch.tensor(RGB_MEAN), torch.tensor(RGB_STD)

    def train():
        net.train()
        optimizer.zero_grad()
        torch_port.d2l_loss(net(X), y).sum().backward()
        optimizer.step()

    @torch.no_grad()
    def forward():
        net.eval()
        net(X)

    @torch.no_grad()
    def predict():  # as predict_image: normalise, pad to 32, crop back
        net.eval()
        (h, w), x = IMAGE_HW, ((img / 255 - mean) / std).permute(2, 0, 1)
        x = torch.nn.functional.pad(x[None], (0, -w % 32, 0, -h % 32))
        net(x)[0, :, :h, :w].argmax(dim=0)  # (H, W)

    return {'train': train, 'forward': forward, 'predict': predict}


FUSED = 'gluon (inference, fused)'


def fused_bench(X):
    """`forward_bench` of the net `predict` and `evaluate` use:
    `model.optimize_for_inference` (quadrant-split upsampling, oneDNN
    fusion)."""
    return forward_bench(
        model.optimize_for_inference(model.build_fcn(NUM_CLASSES), X), X)


def model_child(name, crop, batch_size, repeat, warmup):
    """Time one model alone in this process and print {kind: seconds}
    as JSON: 'train', 'forward', 'predict' (whichever it has)."""
    X, y = random_batch(crop, batch_size)
    if name == TORCH:
        bench = torch_bench(X, y)
    elif name == FUSED:
        bench = fused_bench(X)
    else:
        bench = gluon_bench(*gluon_net(name), X, y)
    print(json.dumps({kind: time_it(fn, repeat, warmup)
                      for kind, fn in bench.items()}))


def run_child(name, crop, batch_size, repeat, warmup):
    """`model_child` in a subprocess: {kind: seconds}."""
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), '--model-child', name,
         '--crop', ','.join(map(str, crop)), '--batch-size',
         str(batch_size), '--repeat', str(repeat), '--warmup', str(warmup)],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def random_batch(crop, batch_size):
    X = np.random.uniform(size=(batch_size, 3) + crop)  # (B, 3, H, W)
    y = np.random.randint(0, NUM_CLASSES, size=(batch_size,) + crop)
    return X, y.astype('float32')  # (B, H, W)


def model_rows(crop, batch_size, repeat, warmup, rounds=2):
    """{model: {'train', 'forward' (img/s), 'latency_s'}}. Each model runs
    alone in a subprocess (two frameworks' idle OpenMP teams in one
    process spin and slow each other), alternating over `rounds`; the
    median of all timed iterations is kept."""
    names = ['gluon', TORCH, FUSED, CHAPTER_ROW]
    times = {name: {} for name in names}
    for _ in range(rounds):
        for name in names:
            for kind, t in run_child(name, crop, batch_size, repeat,
                                     warmup).items():
                times[name].setdefault(kind, []).append(t)
    rows = {}
    for name, kinds in times.items():
        rows[name] = {('latency_s' if kind == 'predict' else kind):
                      (statistics.median(t) if kind == 'predict' else
                       batch_size / statistics.median(t))
                      for kind, t in kinds.items()}
    return rows


def backward_ms(fn, x, repeat):
    """Milliseconds of fn(x) forward and backward (median)."""
    x = x.copy()
    x.attach_grad()

    def step():
        with autograd.record():
            out = fn(x)
        out.backward()
        npx.waitall()
    return 1e3 * time_it(step, repeat)


def component_rows(crop, batch_size, repeat):
    """{component: {'chapter_ms', 'gluon_fcn_ms'}}, forward + backward:
    the 32x upsampler (Conv2DTranspose against the quadrant split, same
    weights) and the loss (MXNet operators against the fused one)."""
    plain = model.make_upsampler(NUM_CLASSES, 32, mx.cpu())
    fast = model.make_upsampler(NUM_CLASSES, 32, mx.cpu())
    use_quadrant_split(fast)
    score = np.random.normal(  # (B, 21, H/32, W/32)
        size=(batch_size, NUM_CLASSES, crop[0] // 32, crop[1] // 32))
    X, y = random_batch(crop, batch_size)
    logits = np.random.normal(size=(batch_size, NUM_CLASSES) + crop)
    loss = make_loss('d2l')
    shape = 'x'.join(map(str, score.shape))
    return {f'upsampler 64/32, input {shape}': {
                'chapter_ms': backward_ms(plain, score, repeat),
                'gluon_fcn_ms': backward_ms(fast, score, repeat)},
            f'loss, logits {"x".join(map(str, logits.shape))}': {
                'chapter_ms': backward_ms(
                    lambda z: pixel_nll(z, y), logits, repeat),
                'gluon_fcn_ms': backward_ms(
                    lambda z: loss(z, y), logits, repeat)}}


def matmul_gflops(repeat, n=4096):
    """{'torch', 'mxnet'}: GFLOP/s of an n x n float32 matrix product."""
    import torch
    A, B = torch.rand(n, n), torch.rand(n, n)
    a, b = np.random.uniform(size=(n, n)), np.random.uniform(size=(n, n))
    times = {'torch': time_it(lambda: torch.mm(A, B), repeat, 1),
             'mxnet': time_it(lambda: np.dot(a, b).wait_to_read(),
                              repeat, 1)}
    return {k: 2 * n ** 3 / t / 1e9 for k, t in times.items()}


def data_rate(crop, batch_size, repeat, num_images):
    """Images per second out of a DataLoader of VOCSegDataset crops."""
    with tempfile.TemporaryDirectory() as tmp, \
            contextlib.redirect_stdout(io.StringIO()):
        make_synthetic_voc(tmp, num_images, 8, sizes=(IMAGE_HW,),
                           progress=False)
        dataset = VOCSegDataset(True, crop, tmp)
    loader = gluon.data.DataLoader(dataset, batch_size, shuffle=True,
                                   last_batch='discard')
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    return batch_size / time_it(
        lambda: next(batches)[0].wait_to_read(), repeat)


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
    child imports MXNet too (gluon_fcn.torch_port does); the Gluon one
    no torch."""
    if which == TORCH:
        import torch  # noqa: F401  (counted in after_import)
    after_import = peak_rss_kib()
    X, y = random_batch(crop, batch_size)
    step = (torch_bench(X, y) if which == TORCH else
            gluon_bench(*gluon_net(which), X, y))['train']
    step()
    step()
    print(json.dumps({'after_import_kib': after_import,
                      'peak_kib': peak_rss_kib()}))


def peak_rss_gb(which, crop, batch_size=32):
    """{'peak_rss_gb', 'import_rss_gb'} of `rss_child` in a subprocess."""
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), '--peak-rss-child',
         which, '--crop', ','.join(map(str, crop)),
         '--batch-size', str(batch_size)],
        check=True, capture_output=True, text=True).stdout
    kib = json.loads(out.strip().splitlines()[-1])
    return {'peak_rss_gb': kib['peak_kib'] / 2 ** 20,
            'import_rss_gb': kib['after_import_kib'] / 2 ** 20}


def cpuinfo():
    """The first processor's fields in /proc/cpuinfo ({} elsewhere)."""
    if not os.path.exists('/proc/cpuinfo'):
        return {}
    with open('/proc/cpuinfo') as f:
        fields = [line.split(':', 1) for line in f if ':' in line]
    return dict(reversed([(k.strip(), v.strip()) for k, v in fields]))


def mxnet_threads():
    """MXNet's OpenMP threads as src/engine/openmp.cc picks them: its
    default on x86 is half the logical CPUs, and loading it sets that
    for torch in this process too (they share libgomp.so.1)."""
    for var in ('MXNET_OMP_MAX_THREADS', 'OMP_NUM_THREADS'):
        if var in os.environ:
            return f'{os.environ[var]} ({var})'
    return f'{max(1, os.cpu_count() // 2)} (default)'


def machine():
    """CPU, cores, AVX-512 flags, RAM, versions, threads and the date."""
    import torch
    info = cpuinfo()
    flags = info.get('flags', '').split()
    ram = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    return {'cpu': info.get('model name', platform.machine()),
            'cores': os.cpu_count(), 'avx512f': 'avx512f' in flags,
            'avx512_bf16': 'avx512_bf16' in flags,
            'ram_gb': round(ram / 2 ** 30, 1),
            'python': platform.python_version(), 'mxnet': mx.__version__,
            'torch': torch.__version__, 'numpy': onp.__version__,
            'torch_threads': torch.get_num_threads(),
            'mxnet_omp_threads': mxnet_threads(),
            'date': datetime.datetime.now().isoformat(timespec='seconds')}


def summary(rows, matmul, data_img_s, crop):
    """Ratios to PyTorch (forward: the fused net that predict and
    evaluate use, and the training net as it runs test passes), forward
    efficiency against the faster matmul, data / train, chapter time."""
    gluon, fused = rows['gluon'], rows[FUSED]
    gflop = GFLOP_320x480 * crop[0] * crop[1] / (320 * 480)
    c = CHAPTER
    seconds = (c['train_images'] * c['epochs'] / gluon['train'] +
               c['test_images'] * c['epochs'] / gluon['forward'])
    return {'train_ratio': gluon['train'] / rows[TORCH]['train'],
            'forward_ratio': fused['forward'] / rows[TORCH]['forward'],
            'forward_ratio_training_net':
                gluon['forward'] / rows[TORCH]['forward'],
            'forward_efficiency':
                gflop * fused['forward'] / max(matmul.values()),
            'data_over_train': data_img_s / gluon['train'],
            'chapter_minutes': seconds / 60}


def format_report(r):
    """The table, each goal below it, and the machine, as printed."""
    s, g, mm = r['summary'], GOALS, r['matmul_gflops']
    crop, batch = r['settings']['crop'], r['settings']['batch_size']
    lines = [(f'| {crop[0]}x{crop[1]}, batch {batch} | train img/s | '
              'forward img/s | latency s | peak RSS GB, batch 32 |'),
             '|---|---|---|---|---|']
    for name, row in r['models'].items():
        cells = ['-' if row.get(k) is None else format(row[k], f)
                 for k, f in (('train', '.2f'), ('forward', '.2f'),
                              ('latency_s', '.3f'), ('peak_rss_gb', '.2f'))]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    lines += ['', '| forward + backward | chapter ms | gluon-fcn ms | '
              'speed-up |', '|---|---|---|---|']
    for name, c in r['components'].items():
        lines.append(f'| {name} | {c["chapter_ms"]:.1f} | '
                     f'{c["gluon_fcn_ms"]:.1f} | '
                     f'{c["chapter_ms"] / c["gluon_fcn_ms"]:.1f}x |')
    lines.append('')
    lines.append(f'gluon / pytorch: train {s["train_ratio"]:.2f}x '
                 f'(goal >= {g["train_ratio"]}), forward (fused) '
                 f'{s["forward_ratio"]:.2f}x (goal >= {g["forward_ratio"]}),'
                 f' forward (training net) '
                 f'{s["forward_ratio_training_net"]:.2f}x')
    lines.append(f'matmul 4096^2 fp32: torch {mm["torch"]:.1f}, mxnet '
                 f'{mm["mxnet"]:.1f} GFLOP/s; fused forward at '
                 f'{s["forward_efficiency"]:.0%} of the faster '
                 f'(goal >= {g["forward_efficiency"]:.0%})')
    lines.append(f'data pipeline: {r["data_img_s"]:.1f} img/s = '
                 f'{s["data_over_train"]:.1f}x gluon train '
                 f'(goal >= {g["data_over_train"]}x)')
    lines.append('the chapter (5 epochs of 1114 train + 1078 test images):'
                 f' {s["chapter_minutes"]:.1f} min')
    lines.append('machine: ' + ', '.join(
        f'{k} {v}' for k, v in r['machine'].items()))
    return '\n'.join(lines)


def save_chart(result, path):
    """Grouped bars of train and forward img/s per model."""
    names, s = list(result['models']), result['summary']
    fig, ax = viz.subplots(figsize=(max(5, 1.8 * len(names)), 3.2))
    x = onp.arange(len(names))
    for k, kind in enumerate(('train', 'forward')):
        values = [result['models'][n].get(kind, 0) for n in names]
        bars = ax.bar(x + (k - 0.5) * 0.4, values, 0.4, label=kind)
        ax.bar_label(bars, fmt='%.1f', fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(names, fontsize=8)
    crop, batch = result['settings']['crop'], result['settings']['batch_size']
    ax.set_ylabel(f'img/s ({crop[0]}x{crop[1]}, batch {batch})')
    ax.legend(loc='upper left', bbox_to_anchor=(1, 1))
    ax.set_title(f'gluon / pytorch: train {s["train_ratio"]:.2f}x, '
                 f'forward {s["forward_ratio"]:.2f}x', fontsize=10)
    fig.savefig(path, format='png', dpi=100, bbox_inches='tight')


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--crop', default='320,480', help='height,width')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--repeat', type=int, default=5)
    p.add_argument('--quick', action='store_true',
                   help='at most 2 repeats, 1 warm-up, fewer images')
    p.add_argument('--no-rss', action='store_true',
                   help='skip the batch-32 peak RSS subprocesses')
    p.add_argument('--out', default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'results'),
        help='writes OUT.json and OUT.png')
    p.add_argument('--peak-rss-child', help=argparse.SUPPRESS)
    p.add_argument('--model-child', help=argparse.SUPPRESS)
    p.add_argument('--warmup', type=int, default=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.crop = tuple(int(v) for v in args.crop.split(','))
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.peak_rss_child:
        return rss_child(args.peak_rss_child, args.crop, args.batch_size)
    if args.model_child:
        return model_child(args.model_child, args.crop, args.batch_size,
                           args.repeat, args.warmup)
    repeat = min(args.repeat, 2) if args.quick else args.repeat
    warmup = 1 if args.quick else 2
    rss = {} if args.no_rss else {  # first, while this process is small
        name: peak_rss_gb(name, args.crop)
        for name in ('gluon', CHAPTER_ROW, TORCH)}
    rows = model_rows(args.crop, args.batch_size, repeat, warmup)
    for name, row in rss.items():
        rows[name].update(row)
    components = component_rows(args.crop, args.batch_size, repeat)
    matmul = matmul_gflops(1 if args.quick else 3)
    data_img_s = data_rate(args.crop, args.batch_size, repeat * 4,
                           16 if args.quick else 64)
    result = {'machine': machine(),
              'settings': {'crop': list(args.crop),
                           'batch_size': args.batch_size,
                           'repeat': repeat, 'warmup': warmup,
                           'num_classes': NUM_CLASSES},
              'models': rows, 'components': components,
              'matmul_gflops': matmul,
              'data_img_s': data_img_s,
              'summary': summary(rows, matmul, data_img_s, args.crop),
              'goals': GOALS}
    print(format_report(result))
    with open(args.out + '.json', 'w') as f:
        json.dump(result, f, indent=2)
        f.write('\n')
    save_chart(result, args.out + '.png')


if __name__ == '__main__':
    main()
