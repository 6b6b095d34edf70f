"""Training on several devices, as d2l 1.0.3 has it.

`split_batch` (:numref:`sec_multi_gpu`), `evaluate_accuracy_gpus`
(:numref:`sec_multi_gpu_concise`), `train_batch_ch13` and `train_ch13`
(:numref:`sec_image_augmentation`) with the book's signatures: the
parameters live on every device (`reset_ctx`), each batch is split with
`split_and_load`, and `gluon.Trainer` sums the gradients over devices.
`train_ch13` prints the book's two closing lines; instead of the book's
Animator it returns the curves' points, which `show_curves` plots.
"""
import time

from mxnet import autograd, context, gluon


def try_gpu(i=0):
    """Return gpu(i) if exists, otherwise return cpu().

    Defined in :numref:`sec_use_gpu`"""
    if context.num_gpus() >= i + 1:
        return context.gpu(i)
    return context.cpu()


def try_all_gpus():
    """Return all available GPUs, or [cpu(),] if no GPU exists.

    As the book's text has it; d2l 1.0.3's library returns [] without a
    GPU, which `train_ch13`'s default cannot use.

    Defined in :numref:`sec_use_gpu`"""
    devices = [context.gpu(i) for i in range(context.num_gpus())]
    return devices if devices else [context.cpu()]


def accuracy(y_hat, y):
    """Compute the number of correct predictions; over the pixels for
    (B, C, H, W) logits and (B, H, W) labels.

    Defined in :numref:`sec_utils`"""
    if len(y_hat.shape) > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(axis=1)
    cmp = y_hat.astype(y.dtype) == y
    return float(cmp.astype(y.dtype).sum())


def split_batch(X, y, devices):
    """Split `X` and `y` into multiple devices.

    Defined in :numref:`sec_multi_gpu`"""
    assert X.shape[0] == y.shape[0]
    return (gluon.utils.split_and_load(X, devices),
            gluon.utils.split_and_load(y, devices))


def evaluate_accuracy_gpus(net, data_iter, split_f=split_batch):
    """Compute the accuracy for a model on a dataset using multiple GPUs.

    Defined in :numref:`sec_multi_gpu_concise`"""
    devices = list(net.collect_params().values())[0].list_ctx()
    correct, total = 0.0, 0
    for features, labels in data_iter:
        X_shards, y_shards = split_f(features, labels, devices)
        pred_shards = [net(X_shard) for X_shard in X_shards]
        correct += sum(float(accuracy(pred_shard, y_shard)) for
                       pred_shard, y_shard in zip(pred_shards, y_shards))
        total += labels.size
    return correct / total


def train_batch_ch13(net, features, labels, loss, trainer, devices,
                     split_f=split_batch):
    """Train for a minibatch with multiple GPUs (defined in Chapter 13).

    Returns the summed loss and the number of correct pixels.

    Defined in :numref:`sec_image_augmentation`"""
    X_shards, y_shards = split_f(features, labels, devices)
    with autograd.record():
        pred_shards = [net(X_shard) for X_shard in X_shards]
        ls = [loss(pred_shard, y_shard) for pred_shard, y_shard
              in zip(pred_shards, y_shards)]
    for l in ls:
        l.backward()
    # The `True` flag allows parameters with stale gradients
    trainer.step(labels.shape[0], ignore_stale_grad=True)
    train_loss_sum = sum([float(l.sum()) for l in ls])
    train_acc_sum = sum(accuracy(pred_shard, y_shard)
                        for pred_shard, y_shard in zip(pred_shards, y_shards))
    return train_loss_sum, train_acc_sum


def train_ch13(net, train_iter, test_iter, loss, trainer, num_epochs,
               devices=None, split_f=split_batch):
    """Train a model with multiple GPUs (defined in Chapter 13).

    `devices` defaults to `try_all_gpus()`. Returns the points the book's
    Animator draws: (epoch, train loss, train acc, test acc), None where
    a curve has no value.

    Defined in :numref:`sec_image_augmentation`"""
    devices = devices or try_all_gpus()

    def train_batch(features, labels):
        l, acc = train_batch_ch13(
            net, features, labels, loss, trainer, devices, split_f)
        return l, acc, labels.shape[0], labels.size
    return epochs_ch13(train_iter, test_iter, num_epochs, devices,
                       train_batch, lambda data_iter: evaluate_accuracy_gpus(
                           net, data_iter, split_f))


def epochs_ch13(train_iter, test_iter, num_epochs, devices, train_batch,
                evaluate):
    """The epochs of `train_ch13`, in either framework: `train_batch(
    features, labels)` -> (loss sum, correct labels, examples, labels),
    timed; `evaluate(test_iter)` -> test accuracy. Prints the book's two
    closing lines and returns the Animator's points."""
    num_batches, seconds, points = len(train_iter), 0.0, []
    for epoch in range(num_epochs):
        # loss sum, correct pixels, examples, pixels
        metric = [0.0] * 4
        for i, (features, labels) in enumerate(train_iter):
            tic = time.time()
            for k, v in enumerate(train_batch(features, labels)):
                metric[k] += v
            seconds += time.time() - tic
            if (i + 1) % max(num_batches // 5, 1) == 0 or \
                    i == num_batches - 1:
                points.append((epoch + (i + 1) / num_batches,
                               metric[0] / metric[2],
                               metric[1] / metric[3], None))
        test_acc = evaluate(test_iter)
        points.append((epoch + 1, None, None, test_acc))
    print(f'loss {metric[0] / metric[2]:.3f}, train acc '
          f'{metric[1] / metric[3]:.3f}, test acc {test_acc:.3f}')
    print(f'{metric[2] * num_epochs / seconds:.1f} examples/sec on '
          f'{str(devices)}')
    return points
