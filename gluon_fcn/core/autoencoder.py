"""The Keras material's convolutional autoencoder, in Gluon.

An encoder of strided convolutions squeezes a 28x28 digit into two
numbers, and a decoder of transposed convolutions draws the digit again
from them (Keras material, 'CAE with MNIST'); trained with Adam on the
mean squared error on the digits 1, 5 and 6, its 2-D latent space can be
drawn. The Keras 'SAME' / 'VALID' paddings become Gluon's through
`gluon_fcn.core.upsampling`.

Data: MNIST through `gluon.data.vision.MNIST` where it can be had (the
files cached, or the download server answering within a short timeout);
otherwise scikit-learn's real handwritten 8x8 digits, enlarged to MNIST's
layout (`sklearn_digits`).
"""
import os
import urllib.request
from collections import namedtuple

import mxnet as mx
import numpy as onp
from mxnet import autograd, gluon, init
from mxnet.gluon import nn

from ..errors import FCNError
from .arrays import legacy, to_mode
from .mxnet_internals import dataset_arrays, repo_file_url
from .upsampling import bilinear, conv_padding, conv_transpose_padding

DIGITS = (1, 5, 6)
IMAGE_SIZE = 28
LATENT_DIM = 2
MNIST_ROOT = os.path.join(mx.base.data_dir(), 'datasets', 'mnist')
MNIST_FILES = ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
               't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')

DigitData = namedtuple('DigitData', 'train_x train_y test_x test_y source')
DigitData.__doc__ = """Images (N, 1, 28, 28) float32 in [0, 1], labels (N,)
int, and `source`: which data set they came from, in words."""


def conv(channels, kernel_size, in_channels, stride=1, padding='SAME',
         activation=None):
    """Keras's Conv2D(filters, kernel_size, strides, padding) in Gluon."""
    return nn.Conv2D(channels, kernel_size, strides=stride,
                     padding=conv_padding(kernel_size, stride, padding),
                     activation=activation, in_channels=in_channels)


class SingleChannelConv2DTranspose(nn.Conv2DTranspose):
    """`nn.Conv2DTranspose` with one output channel, computed in float64.

    MXNet 1.9.1's oneDNN deconvolution cannot back-propagate to the input
    of a layer with a single output channel ('could not create a primitive
    descriptor for a reorder primitive'); MXNet runs float64 without
    oneDNN. Parameters stay float32; outputs agree to float32 rounding.
    """

    def hybrid_forward(self, F, x, weight, bias=None):
        wide = [None if a is None else a.astype('float64')
                for a in (x, weight, bias)]
        return super().hybrid_forward(F, *wide).astype('float32')


def conv_transpose(channels, kernel_size, in_channels, stride=1,
                   padding='SAME', activation=None):
    """Keras's Conv2DTranspose(filters, kernel_size, strides, padding)."""
    pad, output_padding = conv_transpose_padding(kernel_size, stride,
                                                 padding)
    layer = (SingleChannelConv2DTranspose if channels == 1 else
             nn.Conv2DTranspose)
    return layer(channels, kernel_size, strides=stride, padding=pad,
                 output_padding=output_padding, activation=activation,
                 in_channels=in_channels)


def build_encoder():
    """The Keras material's encoder: (B, 1, 28, 28) -> (B, 2, 1, 1)."""
    encoder = nn.HybridSequential(prefix='encoder_')
    with encoder.name_scope():
        encoder.add(conv(32, 3, 1, 2, 'SAME', 'relu'),   # (B, 32, 14, 14)
                    conv(64, 3, 32, 2, 'SAME', 'relu'),  # (B, 64, 7, 7)
                    conv(LATENT_DIM, 7, 64, 1, 'VALID'))  # (B, 2, 1, 1)
    return encoder


def build_decoder():
    """The Keras material's decoder: (B, 2, 1, 1) -> (B, 1, 28, 28)."""
    decoder = nn.HybridSequential(prefix='decoder_')
    with decoder.name_scope():
        decoder.add(
            conv_transpose(64, 7, LATENT_DIM, 1, 'VALID', 'relu'),  # 7x7
            conv_transpose(32, 3, 64, 2, 'SAME', 'relu'),  # (B, 32, 14, 14)
            conv_transpose(1, 7, 32, 2, 'SAME'))  # (B, 1, 28, 28), linear
    return decoder


class ConvAutoencoder(nn.HybridBlock):
    """`decoder(encoder(x))`; both halves are children, to be used alone.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.encoder = build_encoder()
            self.decoder = build_decoder()

    def hybrid_forward(self, F, x):
        return self.decoder(self.encoder(x))


def new_autoencoder(seed=0, ctx=None):
    """A `ConvAutoencoder` initialised as Keras does by default (Glorot
    uniform kernels, zero biases) from `seed`, in MXNet's current mode."""
    net = ConvAutoencoder()
    mx.random.seed(seed)
    net.initialize(init.Xavier(rnd_type='uniform', factor_type='avg',
                               magnitude=3), ctx=ctx or mx.cpu())
    net.hybridize()
    return net


def infer(block, X):
    """`block(X)` for inference, run in training mode all the same: in
    inference mode MXNet 1.9.1's oneDNN deconvolution rewrites its weights
    into the layout of the first batch size it meets, then fails on
    another ('Check failed: weights...'). No layer here acts differently
    when training."""
    with autograd.train_mode():
        return block(X)


def layer_shapes(net, X):
    """The shape of `X` and after each layer of the encoder, then of the
    decoder: [(B, 1, 28, 28), (B, 32, 14, 14), ..., (B, 1, 28, 28)]."""
    X = to_mode(legacy(X))
    shapes = [X.shape]
    for layer in list(net.encoder) + list(net.decoder):
        X = infer(layer, X)
        shapes.append(X.shape)
    return shapes


def batches(X, batch_size, rng=None):
    """Slices of the NumPy array `X` as MXNet arrays of the current mode;
    shuffled when given a NumPy RandomState `rng`."""
    order = rng.permutation(len(X)) if rng else onp.arange(len(X))
    for start in range(0, len(X), batch_size):
        yield to_mode(legacy(X[order[start:start + batch_size]]))


def train_autoencoder(net, train_x, num_epochs=10, batch_size=32, lr=1e-3,
                      seed=0):
    """Fit `net` to reproduce `train_x` (N, 1, 28, 28): Adam on the mean
    squared error, Keras's defaults (lr 1e-3, batch 32). Returns each
    epoch's mean training loss."""
    trainer = gluon.Trainer(net.collect_params(), 'adam',
                            {'learning_rate': lr})
    rng, history = onp.random.RandomState(seed), []
    for _ in range(num_epochs):
        total = 0.0
        for X in batches(train_x, batch_size, rng):
            with autograd.record():
                loss = ((net(X) - X) ** 2).mean()
            loss.backward()
            trainer.step(1)  # the loss is already a mean
            total += loss.asnumpy().item() * len(X)
        history.append(total / len(train_x))
    return history


def run_in_batches(block, X, batch_size=256):
    """`block` over the NumPy array `X` batch by batch, as one legacy
    NDArray."""
    return mx.nd.concat(*[legacy(infer(block, x)) for x in
                          batches(onp.asarray(X), batch_size)], dim=0)


def reconstruction_error(net, X):
    """Mean squared error of `net`'s reconstructions of `X`, a float."""
    X = onp.asarray(legacy(X).asnumpy())
    return float(((run_in_batches(net, X).asnumpy() - X) ** 2).mean())


def encode(net, X):
    """The latent points (N, 2) of the images `X` (N, 1, 28, 28)."""
    Z = run_in_batches(net.encoder, legacy(X).asnumpy())
    return to_mode(Z.reshape((-1, LATENT_DIM)))


def decode(net, Z):
    """The images (N, 28, 28) that `net` draws from latent points (N, 2)."""
    Z = legacy(Z).asnumpy().reshape(-1, LATENT_DIM, 1, 1)
    X = run_in_batches(net.decoder, Z)
    return to_mode(X.reshape((-1, IMAGE_SIZE, IMAGE_SIZE)))


def keep_digits(images, labels, digits):
    """The images (as float32 (N, 1, 28, 28)) and labels of `digits`."""
    mask = onp.isin(labels, digits)
    return (images[mask].reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
            .astype('float32'), labels[mask].astype('int64'))


def sklearn_digits(digits=DIGITS, test_fraction=0.2, seed=0):
    """scikit-learn's real handwritten digits (1,797 of 8x8 pixels, 0-16)
    in MNIST's layout: scaled to [0, 1], enlarged bilinearly to 20x20 and
    centred in 28x28, as MNIST centres its 20x20 digits. A seeded random
    `test_fraction` is held out."""
    from sklearn.datasets import load_digits
    data = load_digits()
    small = data.images[:, None].astype('float32') / 16  # (N, 1, 8, 8)
    box = legacy(bilinear(small, size=(20, 20))).asnumpy()
    margin = (IMAGE_SIZE - 20) // 2
    images = onp.pad(box, ((0, 0), (0, 0), (margin,) * 2, (margin,) * 2))
    images, labels = keep_digits(images, data.target, digits)
    order = onp.random.RandomState(seed).permutation(len(images))
    n_test = int(round(len(images) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return DigitData(images[train], labels[train], images[test],
                     labels[test], "scikit-learn's 8x8 handwritten digits, "
                     'enlarged to 28x28')


def mnist_reachable(root=MNIST_ROOT, timeout=3.0):
    """Whether MNIST can be had: its four files are in `root`, or the
    server gluon downloads from answers within `timeout` seconds."""
    if all(os.path.isfile(os.path.join(root, f)) for f in MNIST_FILES):
        return True
    # the URL gluon's MNIST builds, which honours MXNET_GLUON_REPO
    url = repo_file_url('gluon/dataset/mnist', MNIST_FILES[-1])
    try:
        urllib.request.urlopen(urllib.request.Request(url, method='HEAD'),
                               timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


def mnist_digits(digits=DIGITS, root=MNIST_ROOT):
    """MNIST's training and test images of `digits` in [0, 1]."""
    parts = []
    for train in (True, False):
        mnist = gluon.data.vision.MNIST(root=root, train=train)
        # the whole arrays: item by item would take 70,000 calls
        data, label = dataset_arrays(mnist)
        images = data.asnumpy().transpose(0, 3, 1, 2) / 255
        parts += keep_digits(images, label, digits)
    return DigitData(*parts, 'MNIST, through gluon.data.vision.MNIST')


def load_digit_images(digits=DIGITS, source='auto', root=MNIST_ROOT,
                      timeout=3.0, seed=0):
    """The autoencoder's data: `source` 'mnist', 'sklearn', or 'auto' for
    MNIST where `mnist_reachable` and scikit-learn's digits otherwise.
    Returns a `DigitData`; its `source` says which was used."""
    if source not in ('auto', 'mnist', 'sklearn'):
        raise FCNError(f"data source must be 'auto', 'mnist' or 'sklearn', "
                       f'not {source!r}')
    if source == 'mnist' or (source == 'auto' and
                             mnist_reachable(root, timeout)):
        return mnist_digits(digits, root)
    return sklearn_digits(digits, seed=seed)
