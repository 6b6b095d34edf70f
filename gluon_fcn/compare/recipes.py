"""How each framework trains in a comparison: the chapters' recipes
('textbook') or matched ones, the nets they start from, and a one-step
function per framework.
"""
import dataclasses

import mxnet as mx
import numpy as onp
import torch
from mxnet import gluon

from ..core.arrays import array, settle
from ..core.model import build_fcn
from ..d2l.train import train_batch_ch13
from ..errors import FCNError
from . import torch_port as tp


@dataclasses.dataclass
class Recipe:
    """How one framework trains: its chapter's choices or matched ones."""
    backbone: str
    lr: float
    wd: float
    loss_sum: bool = False      # torch: d2l's l.sum() over the batch
    gluon_bn: bool = False      # torch: MXNet's running variance
    torch_init: bool = False    # torch: keep PyTorch's 1x1 conv init


def as_mxnet_holds(value):
    """A learning rate or weight decay as MXNet's SGD operators hold it, a
    C++ float: 0.1 -> 0.10000000149011612. In float64 their update is
    PyTorch's with these values (to 1e-16); with the exact 0.1 the two
    steps differ by 1.5e-8 of an update, which training from scratch
    amplifies until the curves part (measured in `differences`)."""
    return float(onp.float32(value))


def recipes(settings, backbone='resnet18_v1', lr=0.1):
    """(Gluon recipe, PyTorch recipe) for 'textbook' or 'matched' (with
    both at learning rate `lr`, by default the MXNet chapter's)."""
    if settings == 'textbook':
        return (Recipe('resnet18_v2', 0.1, 1e-3),
                Recipe('resnet18_v1', 0.001, 1e-3, loss_sum=True,
                       torch_init=True))
    if settings == 'matched':
        tp.check_backbone(backbone)
        return (Recipe(backbone, lr, 1e-3),
                Recipe(backbone, as_mxnet_holds(lr), as_mxnet_holds(1e-3),
                       gluon_bn=True))
    raise FCNError(f'--settings {settings}: choose textbook or matched')


def initial_nets(num_classes, gluon_recipe, torch_recipe, seed):
    """A Gluon FCN and a d2l PyTorch FCN starting from the same weights.

    Where the backbones differ (textbook), the PyTorch net takes the
    weights of a Gluon FCN of its own backbone drawn from the same seed.
    With `torch_init`, its 1x1 conv keeps PyTorch's default draw.
    """
    mx.random.seed(seed)
    net = build_fcn(num_classes, gluon_recipe.backbone)
    source = net
    if torch_recipe.backbone != gluon_recipe.backbone:
        mx.random.seed(seed)
        source = build_fcn(num_classes, torch_recipe.backbone)
    torch.manual_seed(seed)
    torch_net = tp.d2l_fcn(num_classes, torch_recipe.backbone)
    state = tp.export_state_dict(source)
    if torch_recipe.torch_init:
        for key in ('final_conv.weight', 'final_conv.bias'):
            state[key] = torch_net.state_dict()[key]
    torch_net.load_state_dict(state)
    if torch_recipe.gluon_bn:
        tp.use_gluon_batchnorm(torch_net)
    return net, torch_net


def torch_train_batch(net, X, y, optimizer, loss_sum):
    """d2l's PyTorch train_batch_ch13 on one device; the batch mean of the
    loss instead of its sum unless `loss_sum`. Returns (loss sum, correct
    pixels)."""
    net.train()
    optimizer.zero_grad()
    pred = net(X)
    l = tp.d2l_loss(pred, y)
    (l.sum() if loss_sum else l.mean()).backward()
    optimizer.step()
    correct = (pred.argmax(dim=1) == y).sum()
    return float(l.detach().sum()), float(correct)


def perturbed_copy(net, num_classes, backbone, seed, dtype, scale=None):
    """A control: a Gluon FCN of `dtype` with `net`'s weights times (1 +
    `scale` x standard normal noise); `scale` by default `dtype`'s machine
    epsilon (float32 1.2e-7, float64 2.2e-16), about one rounding step."""
    scale = perturbation(dtype) if scale is None else scale
    copy = build_fcn(num_classes, backbone)
    copy.cast(dtype)
    rng = onp.random.RandomState(seed)
    settle()  # `net`'s weights are read below
    for mine, theirs in zip(copy.collect_params().values(),
                            net.collect_params().values()):
        value = theirs.data().asnumpy().astype(mine.dtype)
        noise = 1 + scale * rng.standard_normal(value.shape)
        mine.set_data(array(value * noise, dtype=mine.dtype))
    return copy


def perturbation(dtype):
    """The controls' noise: `dtype`'s machine epsilon."""
    return float(onp.finfo(dtype).eps)


def gluon_stepper(net, recipe):
    """step(X, y) -> (loss sum, correct pixels) for a Gluon FCN."""
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {
        'learning_rate': recipe.lr, 'wd': recipe.wd})
    loss = gluon.loss.SoftmaxCrossEntropyLoss(axis=1)

    def step(X, y):
        result = train_batch_ch13(net, X, y, loss, trainer, [mx.cpu()])
        # MXNet's engine is asynchronous: its update would still run when
        # PyTorch's step starts, two thread pools on the same cores
        settle()
        return result
    return step


def torch_stepper(net, recipe):
    """step(X, y) for the d2l PyTorch FCN, on MXNet arrays."""
    optimizer = torch.optim.SGD(net.parameters(), lr=recipe.lr,
                                weight_decay=recipe.wd)
    return lambda X, y: torch_train_batch(
        net, tp.to_torch(X), tp.to_torch(y).long(), optimizer,
        recipe.loss_sum)
