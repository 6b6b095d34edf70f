"""d2l's PyTorch FCN (sec_fcn, PyTorch tab) and weights both ways.

`d2l_fcn` builds the network exactly as the PyTorch chapter does,
`nn.Sequential(*list(resnet18().children())[:-2])` plus `final_conv` and
`transpose_conv`, with a ResNet-18 written here with torchvision's module
tree (torchvision has no CPU wheel here). Its `state_dict` keys are
d2l's: '0.weight', '1.running_mean', '4.0.conv1.weight', ...,
'final_conv.weight', 'transpose_conv.weight', so torchvision's ImageNet
file loads into `resnet18()` and a state dict saved from d2l's own net
loads into `d2l_fcn`. `resnet18_v2` is Gluon's pre-activation ResNet-18
in PyTorch, so the MXNet chapter's exact model runs in PyTorch too.

`export_state_dict` and `load_state_dict` move weights between a Gluon
FCN (`build_fcn(..., backbone='resnet18_v1' or 'resnet18_v2')`) and these
nets, BatchNorm running statistics included.

Requires the `compare` extra (torch).
"""
import collections

import numpy as onp
import torch
from torch import nn
from torch.nn import functional as F

from ..core.arrays import array, settle
from ..core.torchvision_fcn import SUFFIXES  # Gluon's suffix -> PyTorch's
from ..errors import FCNError

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, stride)


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (post-activation, v1)."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class BasicBlockV2(nn.Module):
    """Gluon's BasicBlockV2 (pre-activation), its layers in Gluon's order.
    """

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = None
        if inplanes != planes:
            self.downsample = nn.Conv2d(inplanes, planes, 1, stride,
                                        bias=False)

    def forward(self, x):
        residual = x
        x = F.relu(self.bn1(x))
        if self.downsample is not None:
            residual = self.downsample(x)
        x = F.relu(self.bn2(self.conv1(x)))
        return self.conv2(x) + residual


def make_stages(block):
    """layer1..layer4 of a ResNet-18 built from `block`."""
    stages, inplanes = [], 64
    for planes, stride in STAGES:
        stages.append(nn.Sequential(block(inplanes, planes, stride),
                                    block(planes, planes)))
        inplanes = planes
    return stages


class ResNet(nn.Module):
    """ResNet-18 with torchvision's module tree (version 1: conv1, bn1,
    relu, maxpool, layer1..layer4, avgpool, fc), or Gluon's resnet18_v2
    (version 2): first a BatchNorm on the input without scale and shift
    (`bn_data`, its weight 1 and bias 0 frozen), pre-activation stages,
    and a last BatchNorm and ReLU (`bn_final`, `relu_final`) before the
    pooling. Convolutions are initialised as torchvision does."""

    def __init__(self, num_classes=1000, version=1):
        super().__init__()
        if version == 2:
            self.bn_data = nn.BatchNorm2d(3)
            self.bn_data.weight.requires_grad_(False)
            self.bn_data.bias.requires_grad_(False)
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        (self.layer1, self.layer2, self.layer3, self.layer4) = make_stages(
            BasicBlock if version == 1 else BasicBlockV2)
        if version == 2:
            self.bn_final = nn.BatchNorm2d(512)
            self.relu_final = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out',
                                        nonlinearity='relu')

    def forward(self, x):
        for layer in list(self.children())[:-1]:
            x = layer(x)
        return self.fc(torch.flatten(x, 1))


def resnet18(num_classes=1000):
    """torchvision.models.resnet18() without torchvision: same keys."""
    return ResNet(num_classes)


def resnet18_v2(num_classes=1000):
    """Gluon's model_zoo.vision.resnet18_v2 in PyTorch."""
    return ResNet(num_classes, version=2)


TORCH_BACKBONES = {'resnet18_v1': resnet18, 'resnet18_v2': resnet18_v2}


def bilinear_kernel(in_channels, out_channels, kernel_size):
    """d2l's PyTorch bilinear_kernel (sec_fcn), in torch as there."""
    factor = (kernel_size + 1) // 2
    if kernel_size % 2 == 1:
        center = factor - 1
    else:
        center = factor - 0.5
    og = (torch.arange(kernel_size).reshape(-1, 1),
          torch.arange(kernel_size).reshape(1, -1))
    filt = (1 - torch.abs(og[0] - center) / factor) * \
           (1 - torch.abs(og[1] - center) / factor)
    weight = torch.zeros((in_channels, out_channels,
                          kernel_size, kernel_size))
    weight[range(in_channels), range(out_channels), :, :] = filt
    return weight


def d2l_fcn(num_classes=21, backbone='resnet18_v1', pretrained_net=None):
    """The PyTorch chapter's FCN (sec_fcn), built as d2l builds it.

    `pretrained_net` (e.g. `resnet18()` with torchvision's ImageNet state
    dict loaded) supplies the backbone; by default a fresh one.
    """
    if pretrained_net is None:
        pretrained_net = TORCH_BACKBONES[check_backbone(backbone)]()
    net = nn.Sequential(*list(pretrained_net.children())[:-2])
    net.add_module('final_conv', nn.Conv2d(512, num_classes,
                                           kernel_size=1))
    net.add_module('transpose_conv', nn.ConvTranspose2d(
        num_classes, num_classes, kernel_size=64, padding=16, stride=32))
    W = bilinear_kernel(num_classes, num_classes, 64)
    net.transpose_conv.weight.data.copy_(W)
    return net


def check_backbone(backbone):
    if backbone not in TORCH_BACKBONES:
        raise FCNError(f'the PyTorch port has the backbones '
                       f'{", ".join(TORCH_BACKBONES)}, not {backbone!r}')
    return backbone


def d2l_loss(inputs, targets):
    """The PyTorch chapter's loss: per-example mean over the pixels."""
    return F.cross_entropy(inputs, targets, reduction='none').mean(1).mean(1)


class GluonBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with MXNet's running statistics (CPU, oneDNN): the
    batch's biased variance (PyTorch takes the unbiased one), updated in
    the backward pass, so only where a gradient flows back through the
    layer (never for resnet18_v2's input BatchNorm, whose input and
    fixed scale and shift need none)."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        if torch.is_grad_enabled() and (x.requires_grad or any(
                p is not None and p.requires_grad
                for p in (self.weight, self.bias))):
            with torch.no_grad():
                var, mean = torch.var_mean(x, dim=(0, 2, 3),
                                           unbiased=False)
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var)
                self.num_batches_tracked += 1
        return F.batch_norm(x, None, None, self.weight, self.bias, True,
                            0.0, self.eps)


def use_gluon_batchnorm(net):
    """Switch every BatchNorm2d of `net` to MXNet's running variance (its
    state and keys unchanged); returns `net`."""
    for module in net.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = GluonBatchNorm2d
    return net


def gluon_backbone(net):
    """'resnet18_v2' or 'resnet18_v1': which backbone a Gluon FCN has."""
    params = list(net.collect_params().values())
    return 'resnet18_v2' if params[0].shape == (3,) else 'resnet18_v1'


def param_pairs(net, torch_net):
    """[(Gluon Parameter, torch key)] in layer order, checked kind by kind
    and shape by shape; num_batches_tracked has no Gluon counterpart."""
    params = list(net.collect_params().items())
    keys = [(k, v) for k, v in torch_net.state_dict().items()
            if not k.endswith('num_batches_tracked')]
    if len(params) != len(keys):
        raise FCNError(f'cannot pair {len(params)} Gluon parameters with '
                       f'{len(keys)} PyTorch tensors: not the same model '
                       '(the port has resnet18_v1 and resnet18_v2)')
    pairs = []
    for (name, param), (key, value) in zip(params, keys):
        kind = next((SUFFIXES[s] for s in SUFFIXES
                     if name.endswith('_' + s)), None)
        if kind != key.rsplit('.', 1)[-1] or \
                tuple(param.shape) != tuple(value.shape):
            raise FCNError(f'{name} {param.shape} does not match {key} '
                           f'{tuple(value.shape)}')
        pairs.append((param, key))
    return pairs


def template(net):
    """An empty d2l PyTorch FCN of the Gluon FCN's backbone and classes."""
    num_classes = list(net.collect_params().values())[-1].shape[0]
    return d2l_fcn(num_classes, gluon_backbone(net))


def export_state_dict(net):
    """The PyTorch state dict of a Gluon FCN (resnet18_v1 or _v2, head
    32s), with d2l's keys; `d2l_fcn(...).load_state_dict` takes it."""
    settle()  # a forward still queued could be moving the weights
    torch_net = template(net)
    state = collections.OrderedDict(torch_net.state_dict())
    for param, key in param_pairs(net, torch_net):
        state[key] = torch.from_numpy(param.data().asnumpy().copy())
    for key in state:
        if key.endswith('num_batches_tracked'):
            state[key] = torch.tensor(0)
    if gluon_backbone(net) == 'resnet18_v2':
        # Gluon's input BatchNorm has fix_gamma: its gamma is never used
        state['0.weight'] = torch.ones(3)
    return state


def load_state_dict(net, state_dict):
    """Set a Gluon FCN's parameters (on every device) from a d2l PyTorch
    state dict; returns `net`."""
    torch_net = template(net)
    missing = set(torch_net.state_dict()) - set(state_dict)
    if missing:
        raise FCNError(f'the state dict lacks {sorted(missing)[0]} (and '
                       f'{len(missing) - 1} more): not a d2l FCN')
    for param, key in param_pairs(net, torch_net):
        value = state_dict[key].detach().cpu().numpy()
        param.set_data(array(value, dtype=param.dtype))
    return net


def to_torch(X):
    """An MXNet array as a torch tensor on the CPU (a copy)."""
    return torch.from_numpy(onp.ascontiguousarray(X.asnumpy()))

