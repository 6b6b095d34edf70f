"""Multi-device training as d2l's train_ch13, and the run folder around it.

`split_batch`, `train_batch`, `evaluate_accuracy` and `train` port d2l's
`split_batch` (sec_multi_gpu), `train_batch_ch13`, `evaluate_accuracy_gpus`
and `train_ch13` (sec_image_augmentation) with their signatures: parameters
live on every device (`reset_ctx`), each batch is split with
`split_and_load`, and `gluon.Trainer` sums the gradients over devices.
"""
import dataclasses
import math
import random
import time

import mxnet as mx
import numpy as onp
from mxnet import autograd, gluon, np, npx
from tqdm import tqdm

from . import native
from .data import IGNORE_LABEL
from .errors import FCNError
from .metrics import ConfusionMatrix


def split_batch(X, y, devices):
    """Split `X` and `y` into multiple devices (d2l, sec_multi_gpu)."""
    assert X.shape[0] == y.shape[0]
    return (gluon.utils.split_and_load(X, devices),
            gluon.utils.split_and_load(y, devices))


def accuracy(y_hat, y):
    """Number of correct predictions; over pixels for (B, C, H, W) (d2l)."""
    if len(y_hat.shape) > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(axis=1)
    cmp = y_hat.astype(y.dtype) == y
    return float(cmp.astype(y.dtype).sum())


def evaluate(net, data_iter, split_f=split_batch):
    """d2l's pixel accuracy and the confusion matrix of `net` on
    `data_iter`, in one pass over the devices `net` is on."""
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


def evaluate_accuracy(net, data_iter, split_f=split_batch):
    """Pixel accuracy of `net` on `data_iter`, over the devices `net` is on
    (d2l's evaluate_accuracy_gpus, sec_multi_gpu_concise)."""
    return evaluate(net, data_iter, split_f)[0]


def log_softmax_channels_last(pred):
    """(B, C, H, W) logits -> (B, H, W, C) log-probabilities. MXNet's
    log_softmax over axis 1 of NCHW strides through memory: transposing
    first and reducing the last axis is 1.7x faster, forward and backward
    (benchmarks/), with the same values to float32 rounding."""
    return npx.log_softmax(np.transpose(pred, (0, 2, 3, 1)), axis=-1)


def pixel_nll(pred, label, ignore_label=None):
    """Per example, the mean over its pixels (those not labelled
    `ignore_label`) of -log softmax(pred)[label], with MXNet's operators:
    (B, C, H, W), (B, H, W) -> (B,)."""
    logp = log_softmax_channels_last(pred)  # (B, H, W, C)
    if ignore_label is None:
        nll = -npx.pick(logp, label, axis=-1)
        return nll.reshape(nll.shape[0], -1).mean(axis=1)
    valid = (label != ignore_label).astype(pred.dtype)  # (B, H, W)
    safe = label * valid  # ignored pixels pick class 0, then count 0
    nll = -npx.pick(logp, safe, axis=-1) * valid
    count = valid.reshape(valid.shape[0], -1).sum(axis=1)
    return nll.reshape(nll.shape[0], -1).sum(axis=1) / np.maximum(count, 1)


def fused_pixel_nll(pred, label, ignore_label=None):
    """`pixel_nll` as one native operator (`gluon_fcn.native`): the
    softmax over the channels is read in place, and the backward pass
    writes softmax - onehot directly. 11x faster forward and backward
    (benchmarks/); float32 on the CPU."""
    loss, _ = mx.nd.fcn_pixel_ce(
        pred.as_nd_ndarray(),
        label.astype('float32', copy=False).as_nd_ndarray(),
        ignore_label=-1 if ignore_label is None else ignore_label)
    return loss.as_np_ndarray()


class PixelSoftmaxCELoss(gluon.loss.Loss):
    """Gluon's SoftmaxCrossEntropyLoss(axis=1), the chapter's loss, for
    (B, C, H, W) logits and (B, H, W) labels: per example, the mean over
    the pixels of -log p(label). With `ignore_label`, pixels so labelled
    are left out of the mean (the 'voc' convention). Computed by the
    native operator where it can run, else channels-last."""

    def __init__(self, ignore_label=None, **kwargs):
        super().__init__(None, 0, **kwargs)
        self._ignore = ignore_label

    def forward(self, pred, label):
        nll = fused_pixel_nll if native.usable(pred) else pixel_nll
        return nll(pred, label, self._ignore)


class IgnoreLabelLoss(PixelSoftmaxCELoss):
    """`PixelSoftmaxCELoss` skipping VOC's void label 255 by default."""

    def __init__(self, ignore_label=IGNORE_LABEL, **kwargs):
        super().__init__(ignore_label, **kwargs)


def make_loss(labels='d2l'):
    """The chapter's loss, or one that ignores VOC's void 255 ('voc')."""
    if labels == 'voc':
        return IgnoreLabelLoss()
    return PixelSoftmaxCELoss()


def train_batch(net, features, labels, loss, trainer, devices,
                split_f=split_batch):
    """Train for a minibatch with multiple devices (d2l's train_batch_ch13).

    Returns the summed loss and the number of correct pixels.
    """
    X_shards, y_shards = split_f(features, labels, devices)
    with autograd.record():
        pred_shards = [net(X_shard) for X_shard in X_shards]
        ls = [loss(pred_shard, y_shard) for pred_shard, y_shard
              in zip(pred_shards, y_shards)]
    for l in ls:
        l.backward()
    # `ignore_stale_grad` as in d2l: frozen or unused parameters are fine.
    trainer.step(labels.shape[0], ignore_stale_grad=True)
    train_loss_sum = sum([float(l.sum()) for l in ls])
    train_acc_sum = sum(accuracy(pred_shard, y_shard)
                        for pred_shard, y_shard in zip(pred_shards, y_shards))
    return train_loss_sum, train_acc_sum


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


def train(net, train_iter, test_iter, loss, trainer, num_epochs,
          devices=None, split_f=split_batch, *, history=None,
          start_epoch=0, on_epoch_end=None, seed=None, progress=True,
          num_workers=1):
    """Train a model with multiple devices (d2l's train_ch13).

    Beyond d2l: a tqdm bar per epoch, a line per epoch, a `History` that is
    returned (and may be passed back in with `start_epoch` to resume),
    `on_epoch_end(epoch, history)` after each epoch (checkpoints), and
    `seed`: when given, the generators are re-seeded with `seed + epoch` at
    the start of every epoch, so a resumed run draws what an uninterrupted
    one would. With `num_workers` > 1 (distributed), each worker trains
    in step with the others, so examples/sec is this worker's times it.
    """
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
        # loss sum, correct pixels, examples, pixels
        metric = onp.zeros(4)
        seconds = 0.0
        bar = tqdm(train_iter, total=num_batches, disable=not progress,
                   desc=f'epoch {epoch + 1}/{num_epochs}', leave=False)
        for i, (features, labels) in enumerate(bar):
            tic = time.time()
            l, acc = train_batch(
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
        test_acc, confusion = evaluate(net, test_iter, split_f)
        history.points.append((epoch + 1, None, None, test_acc))
        record = {'epoch': epoch + 1, 'loss': metric[0] / metric[2],
                  'train_acc': metric[1] / metric[3], 'test_acc': test_acc,
                  'test_miou': confusion.compute()['mean_iou'],
                  'examples_per_sec': (metric[2] * num_workers /
                                       max(seconds, 1e-9)),
                  'train_seconds': seconds}
        history.epochs.append(record)
        tqdm.write(format_epoch(record))
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, history)
    if history.epochs:
        last = history.epochs[-1]
        print(f'loss {last["loss"]:.3f}, train acc {last["train_acc"]:.3f}, '
              f'test acc {last["test_acc"]:.3f}')
        workers = f'{num_workers} workers x ' if num_workers > 1 else ''
        print(f'{examples_per_sec(history):.1f} examples/sec on '
              f'{workers}{str(devices)}')
    return history


def check_finite(loss, epoch, batch):
    """Stop at a NaN or infinite loss: the parameters are lost with it,
    and the checkpoints of the finished epochs are left as they are."""
    if not math.isfinite(loss):
        raise FCNError(f'epoch {epoch}, batch {batch}: the loss is {loss}; '
                       'training stopped, the checkpoints of earlier epochs '
                       'are kept (a lower --lr may help)')


def format_epoch(record):
    """`epoch N: loss 0.xxx, train acc 0.xxx, test acc 0.xxx, test mIoU
    0.xxx, M examples/sec`."""
    return (f'epoch {record["epoch"]}: loss {record["loss"]:.3f}, '
            f'train acc {record["train_acc"]:.3f}, '
            f'test acc {record["test_acc"]:.3f}, '
            f'test mIoU {record["test_miou"]:.3f}, '
            f'{record["examples_per_sec"]:.1f} examples/sec')


def examples_per_sec(history):
    """Training throughput over all epochs, counted as d2l counts it."""
    seconds = sum(r['train_seconds'] for r in history.epochs)
    examples = sum(r['examples_per_sec'] * r['train_seconds']
                   for r in history.epochs)
    return examples / max(seconds, 1e-9)
