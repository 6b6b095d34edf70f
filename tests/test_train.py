"""Multi-device training as d2l's train_ch13, on faked CPU devices."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, np

from gluon_fcn.core.model import build_fcn
from gluon_fcn.core.training import (PixelSoftmaxCELoss, fit_epochs,
                                     format_summary, make_chapter_loss,
                                     seed_everything)
from gluon_fcn.d2l import (VOCSegDataset, evaluate_accuracy_gpus,
                           split_batch, train_batch_ch13, train_ch13)


def make_trainer(net):
    return gluon.Trainer(net.collect_params(), 'sgd',
                         {'learning_rate': 0.1, 'wd': 1e-3})


def params_of(net, ctx):
    return {k: v.data(ctx).asnumpy()
            for k, v in net._collect_params_with_prefix().items()}


def test_split_batch_splits_evenly():
    X, y = np.arange(24.0).reshape(4, 6), np.arange(4.0)
    devices = [mx.cpu(0), mx.cpu(1)]
    Xs, ys = split_batch(X, y, devices)
    assert [x.ctx for x in Xs] == devices
    assert (Xs[1] == X[2:]).all() and (ys[0] == y[:2]).all()


def test_two_devices_step_equals_one_device_step(tmp_path):
    """The multi-GPU path: split, per-device backward, summed gradients,
    one update everywhere. Each half of the batch is the same so
    BatchNorm's per-device statistics equal the whole batch's. (float32:
    in float64 MXNet's bundled OpenBLAS, an OpenMP build, deadlocks when
    two CPU contexts call it at once with more than one thread.)"""
    seed_everything(0)
    net = build_fcn(num_classes=3)
    net.save_parameters(str(tmp_path / 'init.params'))
    rng = onp.random.default_rng(0)
    half = rng.normal(size=(2, 3, 64, 96)).astype('float32')
    labels = rng.integers(0, 3, size=(2, 64, 96)).astype('float32')
    X = np.array(onp.concatenate([half, half]))
    y = np.array(onp.concatenate([labels, labels]))
    loss = gluon.loss.SoftmaxCrossEntropyLoss(axis=1)
    results = []
    for devices in ([mx.cpu(0)], [mx.cpu(0), mx.cpu(1)]):
        net.load_parameters(str(tmp_path / 'init.params'))
        net.collect_params().reset_ctx(devices)
        trainer = make_trainer(net)
        l, acc = train_batch_ch13(net, X, y, loss, trainer, devices)
        results.append((l, acc, [params_of(net, d) for d in devices]))
    (l1, acc1, (one,)), (l2, acc2, (first, second)) = results
    # the same sums in another order over two devices: float32 rounding,
    # some 1e-7 an operation; 1e-5 leaves a factor of 100
    assert l1 == pytest.approx(l2, rel=1e-5) and acc1 == acc2
    net.load_parameters(str(tmp_path / 'init.params'))
    before = params_of(net, mx.cpu())
    errors = {}
    for k in one:
        onp.testing.assert_array_equal(first[k], second[k])
        # the updates agree; a wrong batch-size factor would be 50% off
        update = one[k] - before[k]
        diff = onp.linalg.norm(first[k] - one[k])
        errors[k] = diff / max(onp.linalg.norm(update), 1e-12)
    assert sum(onp.linalg.norm(one[k] - before[k]) > 0 for k in one) > 50
    # float32 rounding leaves < 0.6% (float64 gave 1e-9, see above)
    assert max(errors.values()) < 2e-2, max(errors.items(),
                                             key=lambda kv: kv[1])


@pytest.fixture(scope='module')
def loaders(synth_voc):
    train_ds = VOCSegDataset(True, (96, 128), synth_voc)
    test_ds = VOCSegDataset(False, (96, 128), synth_voc)
    return (gluon.data.DataLoader(train_ds, 4, shuffle=True,
                                  last_batch='discard'),
            gluon.data.DataLoader(test_ds, 4, last_batch='discard'))


def background_fraction(data_iter):
    labels = onp.concatenate([y.asnumpy().ravel() for _, y in data_iter])
    return (labels == 0).mean()


NUM_EPOCHS = 8


def test_short_training_learns(loaders, capsys):
    train_iter, test_iter = loaders
    devices = [mx.cpu(0), mx.cpu(1)]
    seed_everything(0)
    net = build_fcn(num_classes=21)
    net.collect_params().reset_ctx(devices)
    loss = gluon.loss.SoftmaxCrossEntropyLoss(axis=1)
    history = fit_epochs(net, train_iter, test_iter, loss,
                         make_trainer(net), NUM_EPOCHS, devices, seed=0,
                         progress=False)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == NUM_EPOCHS and out[0].startswith('epoch 1: loss ')
    out = format_summary(history, devices).splitlines()
    assert out[-2].startswith('loss ') and ', test acc ' in out[-2]
    assert out[-1].endswith('examples/sec on [cpu(0), cpu(1)]')
    losses = [r['loss'] for r in history.epochs]
    assert losses[-1] < 0.5 * losses[0]
    # better than calling every pixel background
    assert history.epochs[-1]['test_acc'] > background_fraction(test_iter)
    # evaluate_accuracy_gpus is the share of correct pixels over all batches
    # (on one device: BatchNorm's running statistics are per device)
    net.collect_params().reset_ctx(mx.cpu())
    seed_everything(1)
    correct = sum(float((net(X).argmax(axis=1).astype('float32') == y)
                        .sum())
                  for X, y in test_iter)
    total = sum(y.size for _, y in test_iter)
    seed_everything(1)
    assert evaluate_accuracy_gpus(net, test_iter) == pytest.approx(
        correct / total, rel=1e-6)
    # d2l's Animator gets a point every len // 5 batches, and at the end;
    # with 6 batches that is after each batch, plus the test accuracy
    assert len(train_iter) == 6
    assert len(history.points) == NUM_EPOCHS * (6 + 1)
    assert [p[3] is None for p in history.points[:7]] == [True] * 6 + [False]


def test_same_seed_same_parameters(loaders, tmp_path):
    train_iter, test_iter = loaders
    loss = gluon.loss.SoftmaxCrossEntropyLoss(axis=1)
    finals = []
    for run in range(2):
        seed_everything(0)
        net = build_fcn(num_classes=21)
        fit_epochs(net, train_iter, test_iter, loss, make_trainer(net), 1,
                   seed=0, progress=False)
        finals.append(params_of(net, mx.cpu()))
    for k in finals[0]:
        onp.testing.assert_array_equal(finals[0][k], finals[1][k])


def test_train_batch_and_evaluate_equal_d2l(d2l, loaders, tmp_path):
    """Same net, same batch: d2l's train_batch_ch13 and ours agree, and so
    do both evaluate_accuracy_gpus."""
    train_iter, test_iter = loaders
    X, y = next(iter(train_iter))
    devices = [mx.cpu(0), mx.cpu(1)]
    loss = gluon.loss.SoftmaxCrossEntropyLoss(axis=1)
    seed_everything(0)
    net = build_fcn(num_classes=21)
    net.save_parameters(str(tmp_path / 'init.params'))
    results = []
    for train_f, eval_f in ((train_batch_ch13, evaluate_accuracy_gpus),
                            (d2l.train_batch_ch13,
                             d2l.evaluate_accuracy_gpus)):
        net.load_parameters(str(tmp_path / 'init.params'))
        net.collect_params().reset_ctx(devices)
        l, acc = train_f(net, X, y, loss, make_trainer(net), devices)
        seed_everything(3)
        results.append((l, acc, eval_f(net, test_iter),
                        params_of(net, devices[1])))
    ours, theirs = results
    assert ours[:3] == theirs[:3]
    for k in ours[3]:
        onp.testing.assert_array_equal(ours[3][k], theirs[3][k])


def test_load_data_voc_with_worker_processes(synth_voc, capsys):
    from gluon_fcn.d2l import load_data_voc
    train_iter, test_iter = load_data_voc(4, (96, 128), synth_voc,
                                          num_workers=2)
    assert capsys.readouterr().out.startswith('read ')
    X, y = next(iter(train_iter))
    assert X.shape == (4, 3, 96, 128) and y.shape == (4, 96, 128)
    assert len(test_iter) == len(test_iter._dataset) // 4


def test_ignore_label_loss():
    rng = onp.random.default_rng(0)
    pred = np.array(rng.normal(size=(2, 4, 5, 6)))
    y = np.array(rng.integers(0, 4, (2, 5, 6)), dtype='float32')
    chapter = gluon.loss.SoftmaxCrossEntropyLoss(axis=1)
    voc = make_chapter_loss('voc')
    # no void pixel: the chapter's loss
    onp.testing.assert_allclose(voc(pred, y).asnumpy(),
                                chapter(pred, y).asnumpy(), rtol=1e-6)
    # void pixels count for nothing: the mean over the others
    y_void = y.copy()
    y_void[:, :2] = 255
    expected = chapter(pred[:, :, 2:], y[:, 2:])
    onp.testing.assert_allclose(voc(pred, y_void).asnumpy(),
                                expected.asnumpy(), rtol=1e-6)


def test_pixel_loss_is_the_chapter_loss_values_and_gradients():
    """make_chapter_loss('d2l') computes Gluon's SoftmaxCrossEntropyLoss(axis=1)
    channels-last: the same values and gradients to float32 rounding."""
    assert isinstance(make_chapter_loss('d2l'), PixelSoftmaxCELoss)
    rng = onp.random.default_rng(1)
    y = np.array(rng.integers(0, 5, (3, 7, 9)), dtype='float32')
    logits = rng.normal(size=(3, 5, 7, 9))
    results = []
    for loss in (gluon.loss.SoftmaxCrossEntropyLoss(axis=1),
                 make_chapter_loss('d2l')):
        pred = np.array(logits, dtype='float32')
        pred.attach_grad()
        with autograd.record():
            l = loss(pred, y)
        l.backward()
        results.append((l.asnumpy(), pred.grad.asnumpy()))
    (l1, g1), (l2, g2) = results
    assert l2.shape == (3,)
    onp.testing.assert_allclose(l2, l1, rtol=1e-6)
    onp.testing.assert_allclose(g2, g1, rtol=1e-5, atol=1e-8)


def test_empty_loader_is_a_clear_error(synth_voc):
    from gluon_fcn.errors import FCNError
    ds = VOCSegDataset(True, (96, 128), synth_voc)
    empty = gluon.data.DataLoader(ds, len(ds) + 1, last_batch='discard')
    net = build_fcn(num_classes=21)
    with pytest.raises(FCNError, match='no batch'):
        fit_epochs(net, empty, empty,
                   gluon.loss.SoftmaxCrossEntropyLoss(axis=1),
                   make_trainer(net), 1, progress=False)


def test_importing_the_package_leaves_matplotlib_s_backend_alone():
    import subprocess
    import sys
    code = ('import matplotlib\n'
            "matplotlib.use('svg')\n"
            'import gluon_fcn.app.figures, gluon_fcn.app.fit\n'
            'import gluon_fcn.app.loading\n'
            'import gluon_fcn.d2l, gluon_fcn.core.predict\n'
            'print(matplotlib.get_backend())\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True).stdout
    assert out.split()[-1] == 'svg'


def test_train_ch13_prints_the_book_s_lines(loaders, capsys):
    """d2l's train_ch13: its two closing lines, and the Animator's points
    (a point every len // 5 batches, then the test accuracy)."""
    train_iter, test_iter = loaders
    seed_everything(0)
    net = build_fcn(num_classes=21)
    points = train_ch13(net, train_iter, test_iter,
                        gluon.loss.SoftmaxCrossEntropyLoss(axis=1),
                        make_trainer(net), 1, [mx.cpu()])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith('loss ') and ', test acc ' in out[0]
    assert out[1].endswith('examples/sec on [cpu(0)]')
    assert [p[3] is None for p in points] == [True] * 6 + [False]
    assert f'test acc {points[-1][3]:.3f}' in out[0]
