"""The fully convolutional network of d2l's FCN section (sec_fcn), and the
FCN paper's skip heads.

`build_fcn` is the one builder: a backbone from Gluon's model zoo without
its pooling and classifier, and a head. Head '32s' is the chapter's: a 1x1
convolution to `num_classes` channels and a transposed convolution that
upsamples by 32, initialised with a bilinear kernel. Heads '16s' and '8s'
(Long et al. 2015) add zero-initialised 1x1 score layers on the 1/16 and
1/8 feature maps, fused by addition after 2x bilinear upsampling.
"""
import os

import mxnet as mx
from mxnet import init
from mxnet.gluon import nn
from mxnet.gluon.model_zoo import model_store, vision

from ..d2l import bilinear_kernel, upsampling_params
from ..errors import FCNError
from . import numeric
from .arrays import settle, zeros

BACKBONES = ('resnet18_v2', 'resnet18_v1', 'resnet34_v1', 'resnet34_v2',
             'resnet50_v1', 'resnet50_v2', 'vgg16')
HEADS = ('32s', '16s', '8s')
STRIDE = 32  # the backbone's total downsampling: (B, C, H/32, W/32)


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
    v1 ResNets, which have no Flatten. VGG16's fc6 and fc7 become 7x7 and
    1x1 convolutions holding the same weights, as in the FCN paper.

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
    if backbone == 'vgg16':
        return vgg_convolutionalized(features, pretrained, ctx)
    n = len(features)
    while isinstance(features[n - 1], (nn.GlobalAvgPool2D, nn.Flatten)):
        n -= 1
    return features[:n]


def vgg_convolutionalized(features, pretrained, ctx):
    """VGG's features with fc6 (Dense 25088 -> 4096) as a 7x7 convolution
    and fc7 as a 1x1 convolution (padding keeps the size: (B, 4096, H/32,
    W/32)), carrying the Dense weights over when they are pretrained."""
    trunk = nn.HybridSequential()
    for layer in features[:-4]:
        trunk.add(layer)
    for dense, dropout, kernel in ((features[-4], features[-3], 7),
                                   (features[-2], features[-1], 1)):
        conv = nn.Conv2D(4096, kernel, padding=kernel // 2,
                         activation='relu')
        if pretrained:
            w = dense.weight.data()
            conv.initialize(ctx=ctx)
            conv.weight.set_data(w.reshape(4096, -1, kernel, kernel))
            conv.bias.set_data(dense.bias.data())
        else:
            conv.initialize(init.Xavier(rnd_type='gaussian',
                                        factor_type='in', magnitude=2),
                            ctx=ctx)
        trunk.add(conv, dropout)
    return trunk


UPSAMPLER_INITS = ('bilinear', 'xavier')


def make_upsampler(num_classes, factor, ctx, upsampler_init='bilinear'):
    """A transposed convolution upsampling by `factor`: kernel 2s, stride
    s, padding s/2 (`upsampling_params`), initialised with the bilinear
    kernel (the chapter) or Xavier (the chapter's first exercise)."""
    if upsampler_init not in UPSAMPLER_INITS:
        raise FCNError(f'unknown upsampler init {upsampler_init!r}; choose '
                       f'from {", ".join(UPSAMPLER_INITS)}')
    kernel_size, strides, padding = upsampling_params(factor)
    up = nn.Conv2DTranspose(num_classes, kernel_size=kernel_size,
                            padding=padding, strides=strides,
                            in_channels=num_classes)
    if upsampler_init == 'bilinear':
        weight = init.Constant(bilinear_kernel(
            num_classes, num_classes, kernel_size).asnumpy())
    else:
        weight = init.Xavier()
    up.initialize(weight, ctx=ctx)
    return up


def split_at_strides(layers, strides=(8, 16), size=64):
    """For each output stride, the index just past the first layer whose
    output has that stride: VGG's pool3 and pool4, where the paper taps,
    and the ends of ResNet's second and third stages."""
    X = zeros((1, 3, size, size))
    reached = []
    for layer in layers:
        X = layer(X.as_in_context(layer_ctx(layer, X)))
        reached.append(size // X.shape[-1])
    return [reached.index(s) + 1 for s in strides]


def layer_ctx(layer, X):
    params = list(layer.collect_params().values())
    return params[0].list_ctx()[0] if params else X.context


class SkipFCN(nn.HybridBlock):
    """FCN-16s / FCN-8s: score layers on the 1/16 (and 1/8) feature maps
    added to the 2x-upsampled coarser scores, then upsampled to the input.
    """

    def __init__(self, layers, num_classes, head, ctx,
                 upsampler_init='bilinear', **kwargs):
        super().__init__(**kwargs)
        i8, i16 = split_at_strides(layers)
        self.head = head
        with self.name_scope():
            self.stage8 = seq(layers[:i8])     # (B, C8, H/8, W/8)
            self.stage16 = seq(layers[i8:i16])  # (B, C16, H/16, W/16)
            self.stage32 = seq(layers[i16:])    # (B, C32, H/32, W/32)
            self.score32 = nn.Conv2D(num_classes, kernel_size=1)
            self.score16 = nn.Conv2D(num_classes, kernel_size=1)
            self.up32 = make_upsampler(num_classes, 2, ctx,
                                       upsampler_init)
            if head == '8s':
                self.score8 = nn.Conv2D(num_classes, kernel_size=1)
                self.up16 = make_upsampler(num_classes, 2, ctx,
                                           upsampler_init)
            self.upsample = make_upsampler(
                num_classes, 8 if head == '8s' else 16, ctx,
                upsampler_init)
        self.score32.initialize(init.Xavier(), ctx=ctx)
        for name in ('score16', 'score8'):
            if hasattr(self, name):  # the paper starts skips at zero
                getattr(self, name).initialize(init.Zero(), ctx=ctx)

    def hybrid_forward(self, F, x):
        f8 = self.stage8(x)
        f16 = self.stage16(f8)
        score = self.up32(self.score32(self.stage32(f16)))  # 1/16
        score = score + self.score16(f16)
        if self.head == '8s':
            score = self.up16(score) + self.score8(f8)  # 1/8
        return self.upsample(score)  # (B, num_classes, H, W)


def seq(layers):
    block = nn.HybridSequential()
    for layer in layers:
        block.add(layer)
    return block


def build_fcn(num_classes=21, backbone='resnet18_v2', head='32s',
              pretrained_backbone=False, root=None, ctx=None,
              upsampler_init='bilinear'):
    """Build an initialised FCN: the chapter's (:numref:`sec_fcn`) with the
    defaults, in the flavour of the MXNet mode in force.

    The layers are the chapter's own (`nn.Conv2DTranspose` upsamplers);
    `gluon_fcn.fast.accelerate(net)` computes the same net faster on a
    CPU, and `optimize_for_inference` fuses it for forward passes.

    Parameters
    ----------
    num_classes : int, positive (else an FCNError)
    backbone : str, one of `BACKBONES`; the chapter's is 'resnet18_v2'.
    head : '32s' (the chapter), '16s' or '8s' (the paper's skip nets).
    pretrained_backbone : bool
        Load the backbone's ImageNet weights from the Gluon model store.
    root : str, optional
        Local model store folder (default `default_model_root()`).
    ctx : Context or list of Context, default cpu.
    upsampler_init : 'bilinear' (the chapter) or 'xavier'
        How the transposed convolutions start.

    Returns
    -------
    net : (B, 3, H, W) -> (B, num_classes, H, W) for H, W multiples of 32;
        for '32s' the chapter's `HybridSequential`, so `net[-1]` is the
        transposed convolution and `net[:-2]` the backbone.
    """
    numeric.count('num_classes', num_classes)
    if head not in HEADS:
        raise FCNError(f'unknown head {head!r}; choose from '
                       f'{", ".join(HEADS)}')
    ctx = ctx or mx.cpu()
    layers = backbone_features(backbone, pretrained_backbone, root, ctx)
    if head != '32s':
        net = SkipFCN(list(layers), num_classes, head, ctx, upsampler_init)
    else:
        net = nn.HybridSequential()
        for layer in layers:
            net.add(layer)
        net.add(nn.Conv2D(num_classes, kernel_size=1),
                make_upsampler(num_classes, STRIDE, ctx, upsampler_init))
        net[-2].initialize(init=init.Xavier(), ctx=ctx)
    _finish_deferred_init(net, ctx)
    return net


def backbone_params(net):
    """The backbone's parameters of an FCN from `build_fcn`, as one
    ParameterDict: those of `net[:-2]` for the chapter's 32s net, those
    of the three stages for the skip heads; the head keeps the rest.
    `backbone_params(net).setattr('grad_req', 'null')` freezes the
    backbone, as the Keras material's `base_model.trainable = False`."""
    if not isinstance(net, SkipFCN):
        return net[:-2].collect_params()
    params = net.stage8.collect_params()
    for stage in (net.stage16, net.stage32):
        params.update(stage.collect_params())
    return params


def score_layers(net):
    """The 1x1 score convolutions of an FCN from `build_fcn`, whose
    outputs (B, num_classes, h, w) the head upsamples: `net[-2]` for the
    chapter's 32s net, `score32`, `score16` (and `score8`) for the skip
    heads."""
    if not isinstance(net, SkipFCN):
        return [net[-2]]
    return [getattr(net, name) for name in ('score32', 'score16', 'score8')
            if hasattr(net, name)]


def _finish_deferred_init(net, ctx):
    """Run one tiny forward so every parameter has its shape and memory,
    and wait for it: the net's weights are read right away (`settle`)."""
    ctx0 = ctx[0] if isinstance(ctx, (list, tuple)) else ctx
    net(zeros((1, 3, STRIDE, STRIDE), ctx=ctx0))
    settle()
