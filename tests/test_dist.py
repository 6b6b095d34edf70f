"""Distributed training on MXNet's parameter server, on loopback: a
scheduler, a server and two workers started by `gluon-fcn launch`."""
import os
import re
import signal
import subprocess
import sys
import threading
import time

import mxnet as mx
import numpy as onp
import pytest
from mxnet import gluon, np

from gluon_fcn.app.cli import main
from gluon_fcn.core.dataset import SegDataset
from gluon_fcn.core.labels import resolve_classes
from gluon_fcn.core.model import build_fcn
from gluon_fcn.core.synthetic import make_synthetic_voc
from gluon_fcn.core.training import seed_everything
from gluon_fcn.d2l import train_batch_ch13
from gluon_fcn.dist.worker import ShardSampler, params_sha1
from gluon_fcn.fast import accelerate, make_fused_loss

pytestmark = pytest.mark.skipif(
    not mx.runtime.Features().is_enabled('DIST_KVSTORE'),
    reason='this MXNet build has no distributed kvstore')

CROP, BATCH, WORKERS = (64, 64), 2, 2
SHA1_LINE = re.compile(r'\[worker (\d)\] rank (\d) of 2: final parameters '
                       r'sha1 ([0-9a-f]{40})')


@pytest.fixture(scope='module')
def tiny_voc(tmp_path_factory):
    """12 training images: 3 global batches of 2 workers x 2."""
    out = tmp_path_factory.mktemp('dist')
    return str(make_synthetic_voc(str(out / 'voc'), num_train=12,
                                  num_val=4, seed=0,
                                  sizes=((64, 64), (96, 80)),
                                  progress=False))


def launch_argv(voc, out, epochs):
    return [sys.executable, '-m', 'gluon_fcn.app.cli', 'launch', '--workers',
            str(WORKERS), '--servers', '1', '--', 'train', '--data', voc,
            '--kvstore', 'dist_sync', '--crop', f'{CROP[0]},{CROP[1]}',
            '--batch-size', str(BATCH), '--epochs', str(epochs),
            '--seed', '0', '--out', out]


def trained_params(net):
    return {k: p.data(mx.cpu(0)).asnumpy()
            for k, p in net._collect_params_with_prefix().items()
            if p.grad_req != 'null'}


def single_process_run(voc, epochs=1):
    """The same global batches in one process: worker k's batch on device
    k, so BatchNorm sees the same examples as in each worker."""
    classes, index_labels = resolve_classes(None, voc)
    seed_everything(0)  # as fit seeds before building the net
    net = accelerate(build_fcn(len(classes)))
    devices = [mx.cpu(0), mx.cpu(1)]
    net.collect_params().reset_ctx(devices)
    net.hybridize()
    initial = trained_params(net)
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.1, 'wd': 1e-3})
    dataset = SegDataset(True, CROP, voc, index_labels=index_labels)
    for epoch in range(epochs):
        shards = []
        for rank in range(WORKERS):
            seed_everything(epoch)  # as train does in each worker
            sampler = ShardSampler(len(dataset), BATCH, rank, WORKERS)
            shards.append(list(gluon.data.DataLoader(dataset, BATCH,
                                                     sampler=sampler)))
        for batches in zip(*shards):
            X = np.concatenate([X for X, _ in batches])
            y = np.concatenate([y for _, y in batches])
            train_batch_ch13(net, X, y, make_fused_loss(), trainer, devices)
    return initial, trained_params(net)


def test_shards_concatenate_to_global_batches():
    seed_everything(3)
    everything = onp.random.permutation(10)[:8]
    shards = []
    for rank in range(2):
        seed_everything(3)
        shards.append(list(ShardSampler(10, 2, rank, 2)))
    assert len(shards[0]) == len(shards[1]) == 4  # 2 global batches
    glued = [i for t in range(2) for s in shards for i in s[2 * t:2 * t + 2]]
    assert glued == everything.tolist()


def test_params_sha1_covers_trained_weights_only():
    net = build_fcn(3)
    before = params_sha1(net)
    params = net._collect_params_with_prefix()
    stats = next(p for p in params.values() if p.grad_req == 'null')
    stats.set_data(stats.data() + 1)  # BatchNorm statistics: not synced
    assert params_sha1(net) == before
    weight = next(p for p in params.values() if p.grad_req != 'null')
    weight.set_data(weight.data() + 1)
    assert params_sha1(net) != before


def test_launch_needs_a_dist_kvstore(capsys):
    assert main(['launch', '--workers', '2', '--', 'train']) == 2
    assert 'pass --kvstore dist_sync' in capsys.readouterr().err


def test_two_workers_match_one_process(tiny_voc, tmp_path):
    """Both workers end with the same parameters, and those are a single
    process's on the same global batches (bit for bit here; the bound
    leaves room for summation order on other machines)."""
    out = str(tmp_path / 'run')
    done = subprocess.run(launch_argv(tiny_voc, out, epochs=1),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    sums = {m[1]: m[3] for m in SHA1_LINE.finditer(done.stdout)
            if m[1] == m[2]}
    assert len(sums) == 2 and sums['0'] == sums['1'], done.stdout
    assert os.path.isfile(os.path.join(out, 'fcn.params'))
    net = build_fcn(len(resolve_classes(None, tiny_voc)[0]))
    net.load_parameters(os.path.join(out, 'fcn.params'))
    assert params_sha1(net) == sums['0']
    initial, reference = single_process_run(tiny_voc)
    dist = trained_params(net)
    assert all((reference[k] != initial[k]).any() for k in reference)
    worst = max(onp.linalg.norm(dist[k] - reference[k]) /
                onp.linalg.norm(reference[k] - initial[k])
                for k in reference)
    # a wrong gradient scale (sum vs mean over workers) would be ~100%
    print(f"worst relative difference {worst:.2e}")
    assert worst < 1e-3, worst


def test_killed_worker_stops_the_job(tiny_voc, tmp_path):
    argv = launch_argv(tiny_voc, str(tmp_path / 'run'), epochs=500)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    guard = threading.Timer(120, proc.kill)  # never hang the suite
    guard.start()
    try:
        pid = None
        for line in proc.stdout:
            found = re.match(r'\[worker 1\] rank 1 of 2: .* pid (\d+)', line)
            pid = int(found[1]) if found else pid
            if pid and line.startswith('[worker 1] epoch 1:'):
                break
        assert pid, 'worker 1 never finished an epoch'
        os.kill(pid, signal.SIGKILL)
        tic = time.time()
        _, err = proc.communicate(timeout=60)
    finally:
        guard.cancel()
        proc.kill()
    print(f"stopped in {time.time() - tic:.1f} s: {err.strip()}")
    assert time.time() - tic < 30
    assert proc.returncode == 2
    assert re.search(r'gluon-fcn: error: worker .*exited with status', err)
