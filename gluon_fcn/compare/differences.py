"""Every way the MXNet and the PyTorch chapter differ, each measured.

`differences` runs small experiments on one batch (gradients, updates,
weight decay alone, BatchNorm statistics, initialisations, input
normalisation) and returns a row per difference with what it measured;
`gluon-fcn compare` prints them (see `compare`).
"""
import mxnet as mx
import numpy as onp
import torch
from mxnet import autograd, gluon, np

from ..core.dataset import SegDataset
from ..core.model import build_fcn
from ..core.training import seed_everything
from ..d2l import RGB_MEAN, RGB_STD, normalize_image
from . import torch_port as tp
from .recipes import gluon_stepper, initial_nets, recipes, torch_stepper


def gluon_grad_and_update(net, X, y, recipe, name):
    """One Gluon training step on (X, y): the gradient it applied to
    parameter `name` (d2l's key), as Trainer.step rescales it, and the
    change it made (as numpy)."""
    param = dict(zip(param_names(net), net.collect_params().values()))[name]
    before = param.data().asnumpy()
    gluon_stepper(net, recipe)(X, y)
    grad = param.grad().asnumpy() / len(X)  # Trainer's rescale_grad
    return grad, param.data().asnumpy() - before


def param_names(net):
    """Gluon parameter names as d2l's PyTorch keys (same order)."""
    return [key for _, key in tp.param_pairs(net, tp.template(net))]


def torch_grad_and_update(net, X, y, recipe, name):
    """The same for the d2l PyTorch FCN (X, y as MXNet arrays)."""
    param = dict(net.named_parameters())[name]
    before = param.detach().clone()
    torch_stepper(net, recipe)(X, y)
    return param.grad.numpy(), (param.detach() - before).numpy()


def decay_per_step(recipe, batch_size):
    """How much one SGD step with a zero data gradient shrinks a weight of
    1 in each framework (weight decay alone): (Gluon, PyTorch)."""
    w = gluon.Parameter('w', shape=(1,), init=mx.init.One())
    w.initialize(ctx=mx.cpu())
    trainer = gluon.Trainer([w], 'sgd', {'learning_rate': recipe[0].lr,
                                         'wd': recipe[0].wd})
    with autograd.record():
        (w.data() * 0).sum().backward()
    trainer.step(batch_size)
    t = torch.ones(1, requires_grad=True)
    optimizer = torch.optim.SGD([t], lr=recipe[1].lr,
                                weight_decay=recipe[1].wd)
    (t * 0).sum().backward()
    optimizer.step()
    return 1 - float(w.data()[0]), 1 - float(t.detach()[0])


def batchnorm_update(X):
    """Running statistics after one training batch, Gluon vs PyTorch
    defaults: (mean gap, PyTorch's / Gluon's variance increment)."""
    bn = gluon.nn.BatchNorm(in_channels=X.shape[1])
    bn.initialize(ctx=mx.cpu())
    with autograd.record():
        y = bn(X)
    y.backward()  # MXNet's oneDNN BatchNorm updates its statistics here
    tbn = torch.nn.BatchNorm2d(X.shape[1])
    tbn.train()
    tbn(tp.to_torch(X))
    mean_gap = onp.abs(bn.running_mean.data().asnumpy() -
                       tbn.running_mean.numpy()).max()
    ratio = (tbn.running_var.numpy() - 0.9) / \
        (bn.running_var.data().asnumpy() - 0.9)
    return float(mean_gap), float(ratio.mean())


def init_std(num_classes, seed):
    """Sample std of the 1x1 conv's weights and biases in each chapter."""
    mx.random.seed(seed)
    conv = gluon.nn.Conv2D(num_classes, 1, in_channels=512)
    conv.initialize(mx.init.Xavier(), ctx=mx.cpu())
    torch.manual_seed(seed)
    tconv = torch.nn.Conv2d(512, num_classes, 1)
    return (float(conv.weight.data().std()), float(conv.bias.data().std()),
            float(tconv.weight.detach().std()),
            float(tconv.bias.detach().std()))


def normalization_gap(X_raw):
    """Largest gap between the two chapters' input normalisation of the
    same uint8 images (Gluon's normalize_image; torchvision's Normalize
    formula)."""
    gluon_x = normalize_image(X_raw)  # (B, H, W, 3)
    t = torch.from_numpy(X_raw.asnumpy().astype('float32') / 255)
    torch_x = ((t - torch.tensor(RGB_MEAN)) / torch.tensor(RGB_STD)).numpy()
    return float(onp.abs(gluon_x.asnumpy() - torch_x).max())


def num_values(net):
    """How many numbers a Gluon net holds (running statistics too)."""
    return sum(int(onp.prod(p.shape)) for p in net.collect_params().values())


def differences(voc_dir, batch_size=4, crop=(64, 96), seed=0,
                num_classes=21, index_labels=False):
    """Each difference between the two chapters with what the tool
    measured: a list of {'aspect', 'mxnet', 'pytorch', 'measured'}."""
    textbook = recipes('textbook')
    seed_everything(seed)
    dataset = SegDataset(True, crop, voc_dir, index_labels=index_labels)
    X, y = next(iter(gluon.data.DataLoader(dataset, batch_size)))
    rows = []

    def row(aspect, mxnet, pytorch, measured):
        rows.append({'aspect': aspect, 'mxnet': mxnet, 'pytorch': pytorch,
                     'measured': measured})

    v1 = recipes('matched')[0]
    net, torch_net = initial_nets(num_classes, v1, v1, seed)
    gap = onp.abs(build_fcn(num_classes)[-1].weight.data().asnumpy() -
                  tp.d2l_fcn(num_classes).transpose_conv.weight.detach()
                  .numpy()).max()
    counts = [num_values(n) for n in (build_fcn(num_classes, 'resnet18_v2'),
                                       net)]
    row('backbone', 'resnet18_v2 (pre-activation, BatchNorm on the input)',
        'resnet18 (v1, post-activation)',
        f'{counts[0]:,} vs {counts[1]:,} values; different functions')
    name = 'final_conv.weight'
    g_grad, g_step = gluon_grad_and_update(net, X, y, textbook[0], name)
    t_grad, t_step = torch_grad_and_update(torch_net, X, y, textbook[1],
                                           name)
    row('loss reduction', 'mean over pixels, trainer.step(batch_size): '
        'gradient of the batch mean', 'mean over pixels, l.sum() over the '
        'batch: gradient of the batch sum',
        f'PyTorch gradient / Gluon gradient = '
        f'{onp.abs(t_grad).sum() / onp.abs(g_grad).sum():.3f} '
        f'(batch {batch_size})')
    row('learning rate', f'{textbook[0].lr:g}', f'{textbook[1].lr:g}',
        f'update size PyTorch / Gluon on the same batch = '
        f'{onp.abs(t_step).sum() / onp.abs(g_step).sum():.4f} '
        f'(lr ratio x batch = '
        f'{textbook[1].lr / textbook[0].lr * batch_size:.4f})')
    g_decay, t_decay = decay_per_step(textbook, batch_size)
    row('weight decay placement', f'wd {textbook[0].wd:g} added to the '
        'rescaled (mean) gradient', f'weight_decay {textbook[1].wd:g} added '
        'to the summed gradient', f'shrink per step with no data gradient: '
        f'{g_decay:.1e} vs {t_decay:.1e}; relative to the data term '
        f'PyTorch decays {batch_size}x less')
    X_small = X[:, :, :4, :4]  # few values, so n/(n-1) shows
    mean_gap, var_ratio = batchnorm_update(X_small)
    n = X_small.shape[0] * 16
    row('BatchNorm momentum', 'momentum 0.9 = weight of the old running '
        'value; running var from the biased batch variance',
        'momentum 0.1 = weight of the new value; unbiased batch variance',
        f'running mean gap {mean_gap:.1e} (the same update); variance '
        f'increment ratio {var_ratio:.5f} = n/(n-1) for n={n} '
        f'({n / (n - 1):.5f})')
    stds = init_std(num_classes, seed)
    row('1x1 conv initialisation', 'Xavier uniform, bias 0',
        'PyTorch default (Kaiming uniform a=sqrt(5)), bias uniform',
        f'weight std {stds[0]:.4f} vs {stds[2]:.4f}, bias std {stds[1]:.4f}'
        f' vs {stds[3]:.4f}')
    raw = np.array(onp.random.RandomState(seed).randint(
        0, 256, (2, 8, 8, 3)), dtype='uint8')
    row('input normalisation', 'ImageNet mean/std on [0, 1] pixels (and '
        'resnet18_v2 adds a BatchNorm on the input)', 'ImageNet mean/std '
        '(transforms.Normalize)', f'largest gap on the same images '
        f'{normalization_gap(raw):.1e}')
    row('transposed conv initialisation', 'bilinear_kernel(64)',
        'bilinear_kernel(64)', f'largest weight gap {gap:.1e}')
    return rows


def format_rows(rows):
    """The differences as a plain-text table, one block per aspect."""
    lines = []
    for r in rows:
        lines += [f'{r["aspect"]}:', f'  MXNet:    {r["mxnet"]}',
                  f'  PyTorch:  {r["pytorch"]}',
                  f'  measured: {r["measured"]}']
    return '\n'.join(lines)
