"""The training cell of the FCN chapter, run through each MXNet edition's
own code: v1 (`gluon_fcn.v1`, d2lzh's `train`, legacy `nd` arrays) and
the 2nd edition (`gluon_fcn.d2l`, `train_ch13`, MXNet's NumPy mode).

The net is built as both chapters build it (:numref:`sec_fcn`; d2l-zh
v1 section 9.10): resnet18_v2's `features[:-2]` with ImageNet weights, a
1x1 convolution to 21 classes and a 64/32/16 transposed convolution
initialised with the edition's `bilinear_kernel`. The book's functions
run unchanged: their printed lines are read as they are printed, and
the data iterators are wrapped only to count batches for a progress bar.
"""
import contextlib
import io
import re
import sys
import time

import mxnet as mx
import numpy as onp
from mxnet import gluon, init, util
from mxnet.gluon import nn
from mxnet.gluon.model_zoo import vision
from tqdm import tqdm

from .. import d2l, v1
from ..errors import FCNError
from .book import parse_figures

NUM_CLASSES = 21


def load_backbone(path):
    """Gluon's resnet18_v2 holding the ImageNet weights in `path`: the
    model store's file, or one saved from the net or its `features`
    (MXNet's legacy format; a file saved in NumPy mode loads in the 2nd
    edition only)."""
    pretrained_net = vision.resnet18_v2()
    try:
        pretrained_net.load_parameters(path)
        return pretrained_net
    except Exception:  # MXNetError, AssertionError: try the features
        pass
    try:
        pretrained_net.features.load_parameters(path)
    except Exception as e:
        raise FCNError(f'{path}: not the parameters of Gluon\'s '
                       'resnet18_v2 or its features') from e
    pretrained_net.output.initialize()
    return pretrained_net


def random_backbone():
    """resnet18_v2 with random weights (for timing a step)."""
    pretrained_net = vision.resnet18_v2()
    pretrained_net.initialize(init.Xavier())
    return pretrained_net


def chapter_net(pretrained_net, bilinear_kernel, num_classes=NUM_CLASSES):
    """The chapter's FCN on `pretrained_net` (:numref:`sec_fcn`)."""
    net = nn.HybridSequential()
    for layer in pretrained_net.features[:-2]:
        net.add(layer)  # (B, 512, H/32, W/32)
    net.add(nn.Conv2D(num_classes, kernel_size=1),
            nn.Conv2DTranspose(num_classes, kernel_size=64, padding=16,
                               strides=32))  # (B, 21, H, W)
    W = bilinear_kernel(num_classes, num_classes, 64)
    net[-1].initialize(init.Constant(W))
    net[-2].initialize(init=init.Xavier())
    return net


@contextlib.contextmanager
def mode(numpy):
    """MXNet's NumPy mode on (the 2nd edition) or off (v1) for a block."""
    if numpy:  # MXNet allows array semantics only with shape semantics
        with util.np_shape(True), util.np_array(True):
            yield
    else:
        with util.np_array(False), util.np_shape(False):
            yield


class Lines(io.TextIOBase):
    """A stream that passes writes on to `out` and hands each complete
    line to `on_line`."""

    def __init__(self, out, on_line):
        self.out, self.on_line, self.part = out, on_line, ''

    def write(self, text):
        self.out.write(text)
        self.part += text
        *lines, self.part = self.part.split('\n')
        for line in lines:
            self.on_line(line)
        return len(text)

    def flush(self):
        self.out.flush()


class Counted:
    """A data iterator as the book's functions see it (`len`, iteration)
    that moves a progress bar a batch at a time."""

    def __init__(self, data_iter, bar):
        self.data_iter, self.bar = data_iter, bar

    def __len__(self):
        return len(self.data_iter)

    def __iter__(self):
        for batch in self.data_iter:
            yield batch
            self.bar.update()


@contextlib.contextmanager
def watched(train_iter, test_iter, num_epochs, progress, desc):
    """(train_iter, test_iter, printed lines): the iterators behind one
    progress bar over every batch of the run, and the lines the book's
    functions print, collected as they are printed."""
    total = num_epochs * (len(train_iter) + len(test_iter))
    lines = []
    with tqdm(total=total, disable=not progress, desc=desc, unit='batch',
              leave=False) as bar, \
            contextlib.redirect_stdout(Lines(sys.stdout, lines.append)):
        yield Counted(train_iter, bar), Counted(test_iter, bar), lines


def check_batches(train_iter, test_iter, voc_dir, batch_size, crop):
    for name, data_iter in (('train', train_iter), ('val', test_iter)):
        if len(data_iter) == 0:
            raise FCNError(f'{voc_dir}: the {name} split has fewer images '
                           f'of at least {crop[0]}x{crop[1]} than a batch '
                           f'({batch_size})')


def run_v1(voc_dir, backbone, epochs, batch_size, crop, lr, wd,
           progress=True):
    """The v1 chapter's training cell with d2lzh's `train`; returns
    {'epochs': [{'epoch', 'loss', 'train_acc', 'test_acc', 'seconds'}],
    'devices', 'lines'} from the lines it printed."""
    from mxnet import nd
    from mxnet.gluon import data as gdata, loss as gloss
    with mode(numpy=False):
        net = chapter_net(load_backbone(backbone), v1.bilinear_kernel)
        colormap2label = nd.zeros(256 ** 3)
        for i, cm in enumerate(v1.VOC_COLORMAP):
            colormap2label[(cm[0] * 256 + cm[1]) * 256 + cm[2]] = i
        train_iter, test_iter = (gdata.DataLoader(
            v1.VOCSegDataset(is_train, crop, voc_dir, colormap2label),
            batch_size, shuffle=is_train, last_batch='discard')
            for is_train in (True, False))
        check_batches(train_iter, test_iter, voc_dir, batch_size, crop)
        ctx = v1.try_all_gpus()
        loss = gloss.SoftmaxCrossEntropyLoss(axis=1)
        net.collect_params().reset_ctx(ctx)
        trainer = gluon.Trainer(net.collect_params(), 'sgd',
                                {'learning_rate': lr, 'wd': wd})
        with watched(train_iter, test_iter, epochs, progress, 'v1') as (
                train_iter, test_iter, lines):
            v1.train(train_iter, test_iter, net, loss, trainer, ctx,
                     epochs)
    records = [r for r in map(parse_figures, lines) if r]
    if len(records) != epochs:
        raise FCNError(f'v1 train printed {len(records)} epoch lines, not '
                       f'{epochs}')
    return {'epochs': records, 'devices': str(ctx), 'lines': lines}


def epochs_of(points):
    """Per-epoch figures of `train_ch13`'s Animator points: the last
    training point and the test point of each epoch."""
    records = {}
    for x, loss, train_acc, test_acc in points:
        epoch = int(onp.ceil(x - 1e-9))
        record = records.setdefault(epoch, {'epoch': epoch})
        if loss is not None:
            record.update(loss=loss, train_acc=train_acc)
        if test_acc is not None:
            record['test_acc'] = test_acc
    return [records[e] for e in sorted(records)]


SPEED = r'([\d.]+) examples/sec on (.*)'


def run_d2l(voc_dir, backbone, epochs, batch_size, crop, lr, wd,
            progress=True):
    """The 2nd edition's MXNet training cell with `d2l.train_ch13`;
    returns `ch13_result`."""
    with mode(numpy=True):
        net = chapter_net(load_backbone(backbone), d2l.bilinear_kernel)
        train_iter, test_iter = d2l.load_data_voc(batch_size, crop, voc_dir,
                                                  num_workers=0)
        check_batches(train_iter, test_iter, voc_dir, batch_size, crop)
        devices = d2l.try_all_gpus()
        loss = gluon.loss.SoftmaxCrossEntropyLoss(axis=1)
        net.collect_params().reset_ctx(devices)
        trainer = gluon.Trainer(net.collect_params(), 'sgd',
                                {'learning_rate': lr, 'wd': wd})
        with watched(train_iter, test_iter, epochs, progress, 'd2l') as (
                train_iter, test_iter, lines):
            points = d2l.train_ch13(net, train_iter, test_iter, loss,
                                    trainer, epochs, devices)
    return ch13_result(points, lines, devices)


def ch13_result(points, lines, devices):
    """{'epochs', 'points', 'examples_per_sec', 'devices', 'lines'} of a
    `train_ch13` (either framework's): its points and printed lines."""
    speed = next((m for m in (re.search(SPEED, line) for line in lines)
                  if m), None)
    return {'epochs': epochs_of(points), 'points': points,
            'examples_per_sec': speed and float(speed.group(1)),
            'devices': speed.group(2) if speed else str(devices),
            'lines': lines}


def time_steps(batch_size, crop, steps=3):
    """Seconds a training example and an evaluated example take in the
    chapter's net on this machine: `steps` timed steps of `d2l`'s
    `train_batch_ch13` and forward passes on random data of batch
    `batch_size` and `crop`, after one untimed step, random weights."""
    with mode(numpy=True):
        devices = d2l.try_all_gpus()
        net = chapter_net(random_backbone(), d2l.bilinear_kernel)
        net.collect_params().reset_ctx(devices)
        trainer = gluon.Trainer(net.collect_params(), 'sgd',
                                {'learning_rate': 0.1, 'wd': 1e-3})
        loss = gluon.loss.SoftmaxCrossEntropyLoss(axis=1)
        X = mx.np.random.normal(size=(batch_size, 3) + tuple(crop))
        y = mx.np.random.randint(0, NUM_CLASSES,
                                 size=(batch_size,) + tuple(crop))
        y = y.astype('float32')
        train = lambda: d2l.train_batch_ch13(net, X, y, loss, trainer,
                                             devices)
        test = lambda: d2l.evaluate_accuracy_gpus(net, [(X, y)])
        return tuple(timed(f, steps) / batch_size for f in (train, test))


def timed(step, steps):
    """Mean seconds of `step()` over `steps` calls, after one warm-up."""
    step()
    tic = time.time()
    for _ in range(steps):
        step()
    return (time.time() - tic) / steps
