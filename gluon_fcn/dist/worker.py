"""Distributed training on MXNet's parameter server (kvstore dist_*).

The worker's side: the kvstore, each worker's shard of the data, a Trainer
whose gradient scale makes N workers of batch B step as one process of
batch B * N, rank-labelled output and a checksum of the trained parameters.
`launch.py` starts the job.
"""
import hashlib
import os
import random
import sys

import mxnet as mx
import numpy as onp
from mxnet import gluon

from ..core.arrays import settle
from ..core.mxnet_internals import structured_params
from ..errors import FCNError

def is_distributed(kvstore):
    """True for a dist_* kvstore, given by name or as a KVStore."""
    return 'dist' in getattr(kvstore, 'type', kvstore)


def create_kvstore(name):
    """`name` itself for 'device' and 'local' (Gluon makes those); for
    dist_* this process's KVStore, which joins the job (a worker started by
    `gluon-fcn launch`) and labels this process's output with its rank."""
    if not is_distributed(name):
        return name
    if not mx.runtime.Features().is_enabled('DIST_KVSTORE'):
        raise FCNError(f'--kvstore {name}: this MXNet build has no '
                       'distributed kvstore (DIST_KVSTORE is off)')
    if os.environ.get('DMLC_ROLE') != 'worker':
        raise FCNError(f'--kvstore {name}: start the job with gluon-fcn '
                       'launch (DMLC_ROLE is not worker)')
    label = prefix_output('[worker] ')
    kv = mx.kv.create(name)
    label.text = f'[worker {kv.rank}] '
    print(f'rank {kv.rank} of {kv.num_workers}: kvstore {name}, pid '
          f'{os.getpid()}', flush=True)
    return kv


def rank_of(kvstore):
    """(rank, number of workers): (0, 1) unless distributed."""
    if not is_distributed(kvstore):
        return 0, 1
    return kvstore.rank, kvstore.num_workers


class ShardSampler(gluon.data.Sampler):
    """Worker `rank`'s share of each global batch of `batch_size` *
    `num_workers` examples, drawn from one seeded shuffle of `length`.

    Every worker draws the same order from NumPy's generator (seeded per
    epoch by `train`); worker k takes the k-th `batch_size` slice of each
    global batch, so the workers' batches concatenated in rank order are
    the global batch. The remainder is dropped, so every worker steps
    equally often. Python's generator (the crops) is then reseeded per rank.
    """

    def __init__(self, length, batch_size, rank, num_workers):
        self._length, self._batch_size = length, batch_size
        self._rank, self._num_workers = rank, num_workers

    def __iter__(self):
        order = onp.random.permutation(self._length)
        random.seed(int(onp.random.randint(2 ** 31)) + self._rank)
        step = self._batch_size * self._num_workers
        for start in range(0, len(self) * self._num_workers, step):
            first = start + self._rank * self._batch_size
            yield from order[first:first + self._batch_size].tolist()

    def __len__(self):
        global_batches = self._length // (self._batch_size *
                                          self._num_workers)
        return global_batches * self._batch_size


def shard_sampler(length, batch_size, kvstore):
    """A `ShardSampler` for this worker, or None (shuffle all) if alone."""
    rank, num_workers = rank_of(kvstore)
    if num_workers == 1:
        return None
    return ShardSampler(length, batch_size, rank, num_workers)


class DistTrainer(gluon.Trainer):
    """A Trainer whose optimizer runs on the parameter servers.

    The servers sum the gradients the workers push, so the gradient scale
    is 1 / (batch per worker * workers): an update equals one process's on
    the global batch and the chapter's lr 0.1 keeps its meaning. Optimizer
    states stay on the servers: a checkpoint keeps the optimizer only,
    which is all there is for the chapter's SGD without momentum.
    """

    def __init__(self, params, lr, wd, kvstore):
        super().__init__(params, 'sgd', {
            'learning_rate': lr, 'wd': wd,
            'rescale_grad': 1.0 / kvstore.num_workers},
            kvstore=kvstore, update_on_kvstore=True)

    def save_states(self, fname):
        updater = mx.optimizer.get_updater(self.optimizer)
        with open(fname, 'wb') as f:
            f.write(updater.get_states(dump_optimizer=True))

    def load_states(self, fname):
        raise FCNError('--resume: not supported with a distributed kvstore')


def make_trainer(params, lr, wd, kvstore='device'):
    """The chapter's SGD, its updates made where `kvstore` says."""
    if is_distributed(kvstore):
        return DistTrainer(params, lr, wd, kvstore)
    return gluon.Trainer(params, 'sgd', {'learning_rate': lr, 'wd': wd},
                         kvstore=kvstore)


def params_sha1(net, ctx=None):
    """sha1 of the parameters the kvstore keeps in sync (those with a
    gradient; BatchNorm's running statistics are each worker's own), as
    bytes in sorted name order."""
    digest = hashlib.sha1()
    settle()  # the weights are read below
    params = structured_params(net)
    for name in sorted(params):
        if params[name].grad_req != 'null':
            digest.update(name.encode())
            data = params[name].data(ctx or params[name].list_ctx()[0])
            digest.update(onp.ascontiguousarray(data.asnumpy()).tobytes())
    return digest.hexdigest()


def report_params(net, kvstore):
    """Print `rank K of N: final parameters sha1 <hex>`."""
    rank, num_workers = rank_of(kvstore)
    print(f'rank {rank} of {num_workers}: final parameters sha1 '
          f'{params_sha1(net)}', flush=True)


class Label:
    """The text that starts each line of a `PrefixedStream`; mutable."""

    def __init__(self, text):
        self.text = text


class PrefixedStream:
    """A text stream that starts every line with `label.text`, written
    when the line ends. A carriage return starts its line afresh, as on a
    terminal, so a progress bar shows once, as it ends, if it is left on
    screen."""

    def __init__(self, stream, label):
        self._stream, self._label, self._pending = stream, label, ''

    def write(self, text):
        lines = (self._pending + text).split('\n')
        self._pending = lines.pop().rsplit('\r', 1)[-1]
        for line in lines:
            shown = line.rsplit('\r', 1)[-1]
            if shown or not line:
                self._stream.write(self._label.text + shown + '\n')
        self._stream.flush()
        return len(text)

    def flush(self):  # a line goes out when it ends, never in pieces
        self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def prefix_output(text):
    """Start each line this process prints (stdout and stderr, from
    Python) with `text`; return the `Label` that relabels both."""
    label = Label(text)
    sys.stdout = PrefixedStream(sys.stdout, label)
    sys.stderr = PrefixedStream(sys.stderr, label)
    return label
