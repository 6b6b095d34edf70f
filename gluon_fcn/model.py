"""The fully convolutional network of d2l's FCN section (sec_fcn).

A pretrained ImageNet backbone without its pooling and classifier, a 1x1
convolution to `num_classes` channels, and a transposed convolution that
upsamples by 32, initialised with a bilinear kernel.
"""
import os

import mxnet as mx
import numpy as onp
from mxnet import init, np
from mxnet.gluon import nn
from mxnet.gluon.model_zoo import model_store, vision

from .errors import FCNError
from .primer import upsampling_params

BACKBONES = ('resnet18_v2', 'resnet18_v1', 'resnet34_v1', 'resnet34_v2',
             'resnet50_v1', 'resnet50_v2')
STRIDE = 32  # the backbone's total downsampling: (B, C, H/32, W/32)


def bilinear_kernel(in_channels, out_channels, kernel_size):
    """Weights of a transposed convolution doing bilinear upsampling (d2l).

    Returns an (in_channels, out_channels, k, k) array holding the bilinear
    filter on the diagonal channel pairs and zeros elsewhere.
    """
    factor = (kernel_size + 1) // 2
    if kernel_size % 2 == 1:
        center = factor - 1
    else:
        center = factor - 0.5
    og = (onp.arange(kernel_size).reshape(-1, 1),
          onp.arange(kernel_size).reshape(1, -1))
    filt = (1 - onp.abs(og[0] - center) / factor) * \
           (1 - onp.abs(og[1] - center) / factor)
    weight = onp.zeros((in_channels, out_channels, kernel_size, kernel_size),
                       dtype='float32')
    weight[range(in_channels), range(out_channels), :, :] = filt
    return np.array(weight)


def default_model_root():
    """Gluon's local model store, $MXNET_HOME/models (~/.mxnet/models)."""
    return os.path.join(mx.base.data_dir(), 'models')


def pretrained_params_file(backbone, root=None):
    """The verified ImageNet weights file of `backbone` in the model store.

    Looks in `root` first; a missing or corrupt file is fetched from the
    Gluon model zoo, and where that fails the error names the file to put
    in `root`.
    """
    root = os.path.expanduser(root or default_model_root())
    fname = f'{backbone}-{model_store.short_hash(backbone)}.params'
    try:
        return model_store.get_model_file(backbone, root=root)
    except Exception as e:  # no network, bad hash, no space: one line
        raise FCNError(
            f'ImageNet weights for {backbone} are not available: put '
            f'{fname} in {root} (or pass --model-root DIR)') from e


def backbone_features(backbone='resnet18_v2', pretrained=False, root=None,
                      ctx=None):
    """The backbone's `features` without global pooling and flattening:
    `features[:-2]` for the chapter's resnet18_v2, `features[:-1]` for the
    v1 ResNets, which have no Flatten.

    The result maps (B, 3, H, W) to (B, C, H/32, W/32).
    """
    if backbone not in BACKBONES:
        raise FCNError(f'unknown backbone {backbone!r}; choose from '
                       f'{", ".join(BACKBONES)}')
    pretrained_net = vision.get_model(backbone)
    if pretrained:
        pretrained_net.load_parameters(
            pretrained_params_file(backbone, root), ctx=ctx)
    else:
        # He initialisation suits the ReLU trunk trained from scratch.
        pretrained_net.initialize(
            init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2),
            ctx=ctx)
    features = pretrained_net.features
    n = len(features)
    while isinstance(features[n - 1], (nn.GlobalAvgPool2D, nn.Flatten)):
        n -= 1
    return features[:n]


def build_fcn(num_classes=21, backbone='resnet18_v2',
              pretrained_backbone=False, root=None, ctx=None):
    """Build d2l's FCN, initialised, as a `HybridSequential` (sec_fcn).

    Parameters
    ----------
    num_classes : int
    backbone : str, one of `BACKBONES`; the chapter's is 'resnet18_v2'.
    pretrained_backbone : bool
        Load the backbone's ImageNet weights from the Gluon model store.
    root : str, optional
        Local model store folder (default `default_model_root()`).
    ctx : Context or list of Context, default cpu.

    Returns
    -------
    net : (B, 3, H, W) -> (B, num_classes, H, W) for H, W multiples of 32.
    """
    ctx = ctx or mx.cpu()
    net = nn.HybridSequential()
    for layer in backbone_features(backbone, pretrained_backbone, root, ctx):
        net.add(layer)
    kernel_size, strides, padding = upsampling_params(STRIDE)
    net.add(nn.Conv2D(num_classes, kernel_size=1),
            nn.Conv2DTranspose(num_classes, kernel_size=kernel_size,
                               padding=padding, strides=strides))
    W = bilinear_kernel(num_classes, num_classes, kernel_size)
    net[-1].initialize(init.Constant(W), ctx=ctx)
    net[-2].initialize(init=init.Xavier(), ctx=ctx)
    _finish_deferred_init(net, ctx)
    return net


def _finish_deferred_init(net, ctx):
    """Run one tiny forward so every parameter has its shape and memory."""
    ctx0 = ctx[0] if isinstance(ctx, (list, tuple)) else ctx
    net(np.zeros((1, 3, STRIDE, STRIDE), ctx=ctx0))
