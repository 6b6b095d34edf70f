"""torchvision's FCN (`models/segmentation/fcn.py`) built in Gluon, with
its weights read from torchvision's `.pth` files, PyTorch not needed.

The PyTorch blog of the material runs torchvision's `fcn_resnet101`;
`--model torchvision:fcn_resnet101` (or `fcn_resnet50`) is that network:
a ResNet-50/101 (v1.5: the stride on the 3x3 convolution of a
bottleneck) whose last two stages are dilated instead of strided
(`replace_stride_with_dilation=[False, True, True]`, output stride 8),
torchvision's `FCNHead` (3x3 convolution to a quarter of the channels
without bias, BatchNorm, ReLU, Dropout(0.1), 1x1 convolution to the
classes), and a bilinear resize to the input size as
`F.interpolate(..., mode='bilinear', align_corners=False)` computes it.
BatchNorm's epsilon is PyTorch's, 1e-5. The auxiliary head on the third
stage is loaded, as the published weights have it, and not run. The
input is normalised as torchvision's (ImageNet's mean and standard
deviation on 0-1 RGB: d2l's `normalize_image`), and the 21 classes are
VOC's (torchvision's COCO-trained FCNs predict VOC's categories).

The weights are torchvision's: `fcn_resnet101_coco-7ecb50ca.pth` and
`fcn_resnet50_coco-1167a1af.pth` in the torch hub cache
(`$TORCH_HOME/hub/checkpoints`), downloaded once where the network
allows, or any `.pth` of `model.state_dict()` of the same architecture.
"""
import os
import shutil
import tempfile
import types
import urllib.request

from mxnet import cpu, init
from mxnet.gluon import nn

from ..d2l.data import VOC_CLASSES
from ..errors import FCNError
from .arrays import array, as_legacy, host, like
from .mxnet_internals import structured_params
from .files import make_folder
from .labels import Legend
from .model import seq
from .pth import read_state_dict
from .sources import sha256_prefix, torch_hub_checkpoints

PREFIX = 'torchvision:'  # --model torchvision:fcn_resnet50
# torchvision's name -> ResNet blocks per stage, and its published file
ARCHITECTURES = {'fcn_resnet50': (3, 4, 6, 3),
                 'fcn_resnet101': (3, 4, 23, 3)}
HUB_FILES = {'fcn_resnet50': 'fcn_resnet50_coco-1167a1af.pth',
             'fcn_resnet101': 'fcn_resnet101_coco-7ecb50ca.pth'}
URL = 'https://download.pytorch.org/models/'  # torchvision's, + file
EPS = 1e-5  # torch.nn.BatchNorm2d's epsilon (Gluon's default is 1e-3)
WINDOW = (480, 480)  # torchvision's training crop (references/)
# Gluon's parameter suffix -> PyTorch's
SUFFIXES = {'weight': 'weight', 'bias': 'bias', 'gamma': 'weight',
            'beta': 'bias', 'running_mean': 'running_mean',
            'running_var': 'running_var'}


def conv(channels, in_channels, kernel=1, stride=1, dilation=1,
         bias=False):
    """torch's Conv2d(in, out, kernel, stride, padding=dilation for 3x3,
    dilation, bias)."""
    return nn.Conv2D(channels, kernel, stride, dilation * (kernel // 2),
                     dilation, use_bias=bias, in_channels=in_channels)


def batch_norm(channels):
    return nn.BatchNorm(epsilon=EPS, in_channels=channels)


class Bottleneck(nn.HybridBlock):
    """torchvision's ResNet v1.5 `Bottleneck`: 1x1, 3x3 (the stride and
    the dilation), 1x1 to 4 x `planes`, each with BatchNorm; the shortcut
    a strided 1x1 convolution and BatchNorm where the shape changes."""

    def __init__(self, inplanes, planes, stride=1, dilation=1,
                 downsample=False, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = conv(planes, inplanes)
        self.bn1 = batch_norm(planes)
        self.conv2 = conv(planes, planes, 3, stride, dilation)
        self.bn2 = batch_norm(planes)
        self.conv3 = conv(planes * 4, planes)
        self.bn3 = batch_norm(planes * 4)
        self.relu = nn.Activation('relu')
        self.downsample = seq([conv(planes * 4, inplanes, 1, stride),
                               batch_norm(planes * 4)]) \
            if downsample else None

    def hybrid_forward(self, F, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class DilatedResNet(nn.HybridBlock):
    """torchvision's `resnet50/101(replace_stride_with_dilation=[False,
    True, True])` without its pooling and classifier: (B, 3, H, W) ->
    (B, 2048, H/8, W/8) (each /2 rounding up)."""

    def __init__(self, blocks, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = conv(64, 3, 7, 2)
        self.bn1 = batch_norm(64)
        self.relu = nn.Activation('relu')
        self.maxpool = nn.MaxPool2D(3, 2, 1)  # (B, 64, H/4, W/4)
        inplanes, dilation = 64, 1
        for k, (planes, n, stride, dilate) in enumerate(zip(
                (64, 128, 256, 512), blocks, (1, 2, 2, 2),
                (False, False, True, True))):
            previous = dilation
            if dilate:  # torchvision's _make_layer
                dilation, stride = dilation * stride, 1
            layer = [Bottleneck(inplanes, planes, stride, previous,
                                stride != 1 or inplanes != planes * 4)]
            inplanes = planes * 4
            layer += [Bottleneck(inplanes, planes, 1, dilation)
                      for _ in range(1, n)]
            setattr(self, f'layer{k + 1}', seq(layer))
        # layer1 (B, 256, H/4, W/4), layer2 (B, 512, H/8, W/8),
        # layer3 (B, 1024, H/8, W/8), layer4 (B, 2048, H/8, W/8)

    def hybrid_forward(self, F, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def fcn_head(in_channels, num_classes):
    """torchvision's `FCNHead`."""
    inter = in_channels // 4
    return seq([conv(inter, in_channels, 3), batch_norm(inter),
                nn.Activation('relu'), nn.Dropout(0.1),
                conv(num_classes, inter, bias=True)])


class TorchvisionFCN(nn.HybridBlock):
    """torchvision's `fcn_resnet50` / `fcn_resnet101` (module docstring):
    (B, 3, H, W) normalised images -> (B, num_classes, H, W) logits, its
    `out`; with `aux`, the auxiliary head's weights are held (in
    `aux.classifier`), not run.
    Its parameters' names are torchvision's state dict keys
    (`torch_params`); `legend` and `window` as `ZooFCN` has them."""

    def __init__(self, name='fcn_resnet50', num_classes=21, aux=True,
                 **kwargs):
        super().__init__(**kwargs)
        check_name(name)
        self.backbone = DilatedResNet(ARCHITECTURES[name])
        self.classifier = fcn_head(2048, num_classes)
        # held outside the graph: a child's (or a list's) parameters that
        # the graph does not use MXNet warns of at every hybridization
        self.aux = types.SimpleNamespace(
            classifier=fcn_head(1024, num_classes) if aux else None)
        self.zoo_name = PREFIX + name
        self.legend = Legend(tuple(VOC_CLASSES))
        self.window = WINDOW

    def hybrid_forward(self, F, x):
        score = self.classifier(self.backbone(x))  # (B, C, H/8, W/8)
        # torch's F.interpolate(bilinear, align_corners=False) to x's
        # size, exactly (a test checks); legacy flavour only
        out = F.contrib.BilinearResize2D(as_legacy(score), as_legacy(x),
                                         mode='like', align_corners=False)
        return like(out, x)  # (B, C, H, W)


def check_name(name):
    if name not in ARCHITECTURES:
        raise FCNError(f'unknown torchvision model {name!r}; choose from '
                       f'{", ".join(PREFIX + n for n in ARCHITECTURES)}')


def torch_params(net):
    """{torchvision's state dict key: Parameter} of a `TorchvisionFCN`."""
    named = dict(structured_params(net))
    if net.aux.classifier is not None:
        named.update((f'aux_classifier.{name}', param)
                     for name, param in
                     structured_params(net.aux.classifier).items())
    params = {}
    for name, param in named.items():
        stem, suffix = name.rsplit('.', 1)
        params[f'{stem}.{SUFFIXES[suffix]}'] = param
    return params


def state_dict(net):
    """{key: NumPy array}: what torchvision's `state_dict()` holds (the
    BatchNorm counters aside), for `pth.write_state_dict`."""
    return {key: host(p.data()) for key, p in torch_params(net).items()}


def load_state(net, state, path):
    """Set `net`'s parameters from a state dict read from `path`; a key
    missing, left over or of another shape is an `FCNError` naming it."""
    params = torch_params(net)
    for key, param in params.items():
        if key not in state:
            raise FCNError(f'{path}: has no {key} (not weights of '
                           f'{net.zoo_name})')
        if tuple(state[key].shape) != tuple(param.shape):
            raise FCNError(f'{path}: {key} is {tuple(state[key].shape)}, '
                           f'{net.zoo_name} has {tuple(param.shape)}')
        param.set_data(array(state[key].astype('float32')))
    extra = [k for k in state if k not in params and
             not k.endswith('.num_batches_tracked')]
    if extra:
        raise FCNError(f'{path}: {extra[0]} is not in {net.zoo_name} '
                       '(weights of another architecture?)')


def hub_file(name, root=None):
    """torchvision's published weights of `name`: the file in `root`
    (default `sources.torch_hub_checkpoints()`), else downloaded there
    once, its sha256 checked against the hash in its name as torch hub
    does; where that fails (offline) the error names the file, the
    folder and the URL, and nothing is written."""
    folder = os.path.expanduser(root) if root else torch_hub_checkpoints()
    fname = HUB_FILES[name]
    path = os.path.join(folder, fname)
    if os.path.isfile(path):
        return path
    try:
        with tempfile.TemporaryDirectory() as tmp:
            part = os.path.join(tmp, fname)
            with urllib.request.urlopen(URL + fname, timeout=30) as r, \
                    open(part, 'wb') as f:
                shutil.copyfileobj(r, f)
            short_hash = fname.rsplit('-', 1)[-1][:-len('.pth')]
            if sha256_prefix(part, len(short_hash)) != short_hash:
                raise ValueError(f'{fname}: sha256 does not match')
            make_folder(folder)
            shutil.move(part, path)
    except Exception as e:  # no network, bad hash, no space: one line
        raise FCNError(
            f'pretrained weights of {PREFIX}{name} are not available: put '
            f'{fname} in {folder} (torchvision downloads it from '
            f'{URL}{fname}; or pass --model-root DIR or --params '
            'FILE)') from e
    return path


def build_torchvision_fcn(name='fcn_resnet50', aux=True,
                          initializer=None, ctx=None):
    """A `TorchvisionFCN` with its auxiliary head, initialised (Xavier by
    default): random weights to save with `state_dict` and
    `pth.write_state_dict`, or to load others into."""
    net = TorchvisionFCN(name, aux=aux)
    for block in (net, net.aux.classifier):
        if block is not None:
            block.initialize(initializer or init.Xavier(), ctx=ctx or cpu())
    return net


def load_torchvision(name, root=None, params=None, ctx=None):
    """torchvision's FCN `name` ('fcn_resnet50' or 'fcn_resnet101') with
    its published weights (`hub_file`, in `root` if given) or those of
    `params`, a `.pth` of its `state_dict()`: a `TorchvisionFCN`, in the
    flavour of the MXNet mode in force."""
    check_name(name)
    if params is not None and not os.path.isfile(params):
        raise FCNError(f'{params}: no such weights file')
    path = params or hub_file(name, root)
    state = read_state_dict(path)
    aux = any(key.startswith('aux_classifier.') for key in state)
    net = build_torchvision_fcn(name, aux, init.Zero(), ctx)  # set below
    load_state(net, state, path)
    return net
