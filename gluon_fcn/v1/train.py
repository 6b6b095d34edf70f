"""Devices, accuracy and the training loop of d2lzh 1.0.0.

Ported from d2lzh 1.0.0 (``d2lzh/utils.py``): `try_all_gpus` and `train`
as v1 section 9.10 "Fully Convolutional Networks (FCN)" calls them, with
the lines d2lzh prints (``training on [gpu(0), gpu(1)]``, then
``epoch 1, loss 1.2399, train acc 0.738, test acc 0.823, time 16.5 sec``).
Arrays are legacy ``mx.nd`` NDArrays.
"""
import time

import mxnet as mx
from mxnet import autograd, nd
from mxnet.gluon import utils as gutils


def try_all_gpus():
    """Return every GPU MXNet can use (up to 16), or ``[mx.cpu()]``.

    Defined in d2lzh 1.0.0 (d2l-zh v1 section 9.1).
    """
    ctxes = []
    try:
        for i in range(16):
            ctx = mx.gpu(i)
            _ = nd.array([0], ctx=ctx)  # raises where the GPU is missing
            ctxes.append(ctx)
    except mx.base.MXNetError:
        pass
    return ctxes or [mx.cpu()]


def try_gpu():
    """Return ``mx.gpu()`` if MXNet can use it, else ``mx.cpu()``.

    Defined in d2lzh 1.0.0 (d2l-zh v1 section 5.5).
    """
    try:
        ctx = mx.gpu()
        _ = nd.array([0], ctx=ctx)
    except mx.base.MXNetError:
        ctx = mx.cpu()
    return ctx


def _get_batch(batch, ctx):
    """Split a (features, labels) batch across the devices `ctx`.

    Defined in d2lzh 1.0.0 (d2l-zh v1 section 9.1). Labels are cast to
    the features' dtype, so the accuracy compares floats with floats.

    Returns
    -------
    tuple
        (list of feature parts, list of label parts, batch size).
    """
    features, labels = batch
    if labels.dtype != features.dtype:
        labels = labels.astype(features.dtype)
    return (gutils.split_and_load(features, ctx),
            gutils.split_and_load(labels, ctx), features.shape[0])


def evaluate_accuracy(data_iter, net, ctx=[mx.cpu()]):
    """The fraction of labels ``net(X).argmax(axis=1)`` gets right.

    Defined in d2lzh 1.0.0 (d2l-zh v1 section 9.1); for the FCN a label is a
    pixel. As in d2lzh, the count is summed in a float32 NDArray, so above
    2 ** 24 correct labels it is rounded.

    Parameters
    ----------
    data_iter : iterable of (NDArray, NDArray)
        Batches of features and labels.
    net : Block
    ctx : Context or list of Context
        The devices each batch is split across.

    Returns
    -------
    float
    """
    if isinstance(ctx, mx.Context):
        ctx = [ctx]
    acc_sum, n = nd.array([0]), 0
    for batch in data_iter:
        features, labels, _ = _get_batch(batch, ctx)
        for X, y in zip(features, labels):
            y = y.astype('float32')
            acc_sum += (net(X).argmax(axis=1) == y).sum().copyto(mx.cpu())
            n += y.size
        acc_sum.wait_to_read()  # one batch at a time in the engine
    return acc_sum.asscalar() / n


def train(train_iter, test_iter, net, loss, trainer, ctx, num_epochs):
    """Train `net` for `num_epochs`, printing a line per epoch.

    Defined in d2lzh 1.0.0 (d2l-zh v1 section 9.1). Each batch is
    split across `ctx`; ``trainer.step`` is given the whole batch size.
    The printed loss is the mean over examples of `loss` (for the FCN each
    example's loss is already the mean over its pixels); the accuracies
    count labels (pixels). Nothing is returned, as in d2lzh.

    Parameters
    ----------
    train_iter, test_iter : iterable of (NDArray, NDArray)
    net : Block
    loss : Loss
        E.g. ``gloss.SoftmaxCrossEntropyLoss(axis=1)`` for the FCN.
    trainer : gluon.Trainer
    ctx : Context or list of Context
        Printed as given: ``training on [cpu(0)]``.
    num_epochs : int
    """
    print('training on', ctx)
    if isinstance(ctx, mx.Context):
        ctx = [ctx]
    for epoch in range(num_epochs):
        train_l_sum, train_acc_sum, n, m = 0.0, 0.0, 0, 0
        start = time.time()
        for batch in train_iter:
            Xs, ys, batch_size = _get_batch(batch, ctx)
            with autograd.record():
                y_hats = [net(X) for X in Xs]
                ls = [loss(y_hat, y) for y_hat, y in zip(y_hats, ys)]
            for l in ls:
                l.backward()
            trainer.step(batch_size)
            train_l_sum += sum([l.sum().asscalar() for l in ls])
            n += sum([l.size for l in ls])
            train_acc_sum += sum([(y_hat.argmax(axis=1) == y).sum()
                                  .asscalar() for y_hat, y in zip(y_hats, ys)])
            m += sum([y.size for y in ys])
        test_acc = evaluate_accuracy(test_iter, net, ctx)
        print(f'epoch {epoch + 1}, loss {train_l_sum / n:.4f}, '
              f'train acc {train_acc_sum / m:.3f}, test acc {test_acc:.3f}, '
              f'time {time.time() - start:.1f} sec')
