"""The training loop around d2l's `train_batch_ch13`, beyond the book: a
progress bar and a line per epoch, a history to resume from, checkpoints
through a callback, per-epoch seeding, the test mIoU, a stop at a
non-finite loss, and the chapter's loss computed channels-last.
Everything here works in the MXNet mode of its caller.
"""
import dataclasses
import math
import random
import time

import mxnet as mx
import numpy as onp
from mxnet import gluon
from tqdm import tqdm

from ..d2l.train import accuracy, split_batch, train_batch_ch13
from ..errors import FCNError
from . import numeric
from .arrays import numpy_mode
from .labels import IGNORE_LABEL
from .metrics import ConfusionMatrix


def evaluate_crops(net, data_iter, split_f=split_batch):
    """d2l's pixel accuracy (`evaluate_accuracy_gpus`) and the confusion
    matrix of `net` on `data_iter`, in one pass over the devices `net` is
    on: (accuracy, ConfusionMatrix)."""
    devices = list(net.collect_params().values())[0].list_ctx()
    correct, total, confusion = 0.0, 0, None
    for features, labels in data_iter:
        X_shards, y_shards = split_f(features, labels, devices)
        pred_shards = [net(X_shard) for X_shard in X_shards]
        for pred_shard, y_shard in zip(pred_shards, y_shards):
            correct += accuracy(pred_shard, y_shard)
            confusion = confusion or ConfusionMatrix(pred_shard.shape[1])
            confusion.update(pred_shard.argmax(axis=1), y_shard)
        total += labels.size
    return correct / total, confusion


class PixelSoftmaxCELoss(gluon.loss.Loss):
    """The chapter's loss, Gluon's `SoftmaxCrossEntropyLoss(axis=1)`, for
    (B, C, H, W) logits and (B, H, W) labels: per example, the mean over
    its pixels of -log softmax(pred)[label]. With `ignore_label`, pixels
    so labelled are left out of the mean (the 'voc' convention).

    The softmax is taken channels-last: MXNet's log_softmax over axis 1
    of NCHW strides through memory, and transposing first is faster
    forward and backward (README, results log, "Speed against the d2l
    PyTorch port"), with the same values to float32 rounding."""

    def __init__(self, ignore_label=None, **kwargs):
        super().__init__(None, 0, **kwargs)
        self._ignore = ignore_label

    def hybrid_forward(self, F, pred, label):
        ops = F.npx if numpy_mode() else F
        maximum = F.np.maximum if numpy_mode() else F.maximum
        logp = ops.log_softmax(pred.transpose((0, 2, 3, 1)), axis=-1)
        if self._ignore is None:  # (B, H, W) -> (B,)
            return -ops.pick(logp, label, axis=-1).mean(axis=(1, 2))
        dtype = getattr(pred, 'dtype', 'float32')  # symbols: float32
        valid = (label != self._ignore).astype(dtype)  # (B, H, W)
        # ignored pixels pick class 0, then count 0
        nll = -ops.pick(logp, label * valid, axis=-1) * valid
        return nll.sum(axis=(1, 2)) / maximum(valid.sum(axis=(1, 2)), 1)


def make_chapter_loss(labels='d2l', loss_class=PixelSoftmaxCELoss):
    """The chapter's loss, or one ignoring VOC's void 255 ('voc')."""
    return loss_class(IGNORE_LABEL if labels == 'voc' else None)


@dataclasses.dataclass
class History:
    """What d2l's Animator plots, plus one record per finished epoch.

    `points` are (x, train loss, train acc, test acc) with x in epochs and
    None where a curve has no value, as the Animator receives them.
    """
    points: list = dataclasses.field(default_factory=list)
    epochs: list = dataclasses.field(default_factory=list)


def seed_everything(seed):
    """Seed Python's (crops), NumPy's (shuffles) and MXNet's generators."""
    random.seed(seed)
    onp.random.seed(seed % 2 ** 32)
    mx.random.seed(seed)


def fit_epochs(net, train_iter, test_iter, loss, trainer, num_epochs,
               devices=None, split_f=split_batch, *, history=None,
               start_epoch=0, on_epoch_end=None, seed=None, progress=True,
               num_workers=1, convention=None):
    """d2l's `train_ch13`, for runs: the same steps (`train_batch_ch13`)
    and figures, with a tqdm bar per epoch and a line per epoch, a
    `History` that is returned (and may be passed back in with
    `start_epoch` to resume), `on_epoch_end(epoch, history)` after each
    epoch (checkpoints), and `seed`: when given, the generators are
    re-seeded with `seed + epoch` at the start of every epoch, so a
    resumed run draws what an uninterrupted one would. With `num_workers`
    > 1 (distributed), each worker trains in step with the others, so
    examples/sec is this worker's times it. `convention`, the labels'
    ('d2l', 'voc'), is named beside the test mIoU printed. Counts that
    are not positive integers, a seed out of `numeric.MAX_SEED`, and a
    trainer's learning rate or weight decay that is NaN, infinite or
    negative (zero for the rate) are FCNErrors before anything runs.
    """
    check_fit_args(trainer, num_epochs, start_epoch, seed, num_workers)
    devices = devices or [mx.cpu()]
    history = history or History()
    num_batches = len(train_iter)
    if num_batches == 0 or len(test_iter) == 0:  # d2l divides by zero
        raise FCNError('a data loader has no batch: fewer images at least '
                       'as large as the crop than the batch size')
    report_every = max(num_batches // 5, 1)
    for epoch in range(start_epoch, num_epochs):
        if seed is not None:
            seed_everything(seed + epoch)
        metric = onp.zeros(4)  # loss sum, correct pixels, examples, pixels
        seconds = 0.0
        bar = tqdm(train_iter, total=num_batches, disable=not progress,
                   desc=f'epoch {epoch + 1}/{num_epochs}', leave=False)
        for i, (features, labels) in enumerate(bar):
            tic = time.time()
            l, acc = train_batch_ch13(
                net, features, labels, loss, trainer, devices, split_f)
            seconds += time.time() - tic
            check_finite(l, epoch + 1, i + 1)
            metric += (l, acc, labels.shape[0], labels.size)
            bar.set_postfix(loss=f'{metric[0] / metric[2]:.3f}',
                            acc=f'{metric[1] / metric[3]:.3f}')
            if (i + 1) % report_every == 0 or i == num_batches - 1:
                history.points.append(
                    (epoch + (i + 1) / num_batches, metric[0] / metric[2],
                     metric[1] / metric[3], None))
        test_acc, confusion = evaluate_crops(net, test_iter, split_f)
        miou = confusion.compute()['mean_iou']
        history.points.append((epoch + 1, None, None, test_acc))
        record = {'epoch': epoch + 1, 'loss': metric[0] / metric[2],
                  'train_acc': metric[1] / metric[3], 'test_acc': test_acc,
                  'test_miou': miou,
                  'examples_per_sec': (metric[2] * num_workers /
                                       max(seconds, 1e-9)),
                  'train_seconds': seconds}
        history.epochs.append(record)
        tqdm.write(format_epoch(record, convention))
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, history)
    return history


def check_fit_args(trainer, num_epochs, start_epoch, seed, num_workers):
    """`fit_epochs`'s numbers, each named as its argument."""
    numeric.count('num_epochs', num_epochs)
    numeric.count('start_epoch', start_epoch, low=0)
    numeric.count('num_workers', num_workers)
    if seed is not None:
        numeric.seed('seed', seed)
    numeric.real("the trainer's learning_rate", trainer.learning_rate)
    numeric.real("the trainer's optimizer's wd", trainer.optimizer.wd,
                 positive=False)


class NonFiniteLoss(FCNError):
    """Training met a NaN or infinite loss."""


def check_finite(loss, epoch, batch):
    """Stop at a NaN or infinite loss: the parameters are lost with it,
    and the checkpoints of the finished epochs are left as they are."""
    if not math.isfinite(loss):
        raise NonFiniteLoss(f'epoch {epoch}, batch {batch}: the loss is '
                            f'{loss}; training stopped, the checkpoints of '
                            'earlier epochs are kept')


def format_epoch(record, labels=None):
    """`epoch N: loss 0.xxx, train acc 0.xxx, test acc 0.xxx, test mIoU
    0.xxx (d2l labels), M examples/sec`: with `labels`, the convention
    the mIoU was measured under (a run's 'd2l' and 'voc' figures
    differ)."""
    convention = f' ({labels} labels)' if labels else ''
    return (f'epoch {record["epoch"]}: loss {record["loss"]:.3f}, '
            f'train acc {record["train_acc"]:.3f}, '
            f'test acc {record["test_acc"]:.3f}, '
            f'test mIoU {record["test_miou"]:.3f}{convention}, '
            f'{record["examples_per_sec"]:.1f} examples/sec')


def format_summary(history, devices, num_workers=1):
    """d2l's two closing lines: the last epoch's figures, and the
    throughput over all epochs."""
    last = history.epochs[-1]
    workers = f'{num_workers} workers x ' if num_workers > 1 else ''
    return (f'loss {last["loss"]:.3f}, train acc {last["train_acc"]:.3f}, '
            f'test acc {last["test_acc"]:.3f}\n'
            f'{examples_per_sec(history):.1f} examples/sec on '
            f'{workers}{str(devices)}')


def train_seconds(history):
    """The run's time in training steps, all epochs (not the test passes).
    """
    return sum(r['train_seconds'] for r in history.epochs)


def examples_per_sec(history):
    """Training throughput over all epochs, counted as d2l counts it."""
    examples = sum(r['examples_per_sec'] * r['train_seconds']
                   for r in history.epochs)
    return examples / max(train_seconds(history), 1e-9)
