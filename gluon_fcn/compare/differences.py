"""Every way the MXNet and the PyTorch chapter differ, each measured.

`differences` runs small experiments on one batch (gradients, updates,
weight decay alone, BatchNorm statistics, initialisations, input
normalisation, the precision of the optimiser's hyperparameters, the
arithmetic of the same net) and returns a row per difference with what
it measured and what the 'matched' settings do about it: neutralise it,
or not (it remains), or nothing (the chapters agree).
"""
import mxnet as mx
import numpy as onp
import torch
from mxnet import autograd, gluon, np

from ..core.arrays import array
from ..core.dataset import SegDataset
from ..core.model import build_fcn
from ..core.training import seed_everything
from ..d2l import RGB_MEAN, RGB_STD, normalize_image
from . import torch_port as tp
from .recipes import (as_mxnet_holds, gluon_stepper, initial_nets,
                      perturbation, perturbed_copy, recipes, torch_stepper)

CROP = (64, 96)  # small: the measurements need one batch, not a picture


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


def update_gaps(recipe, size=1000, seed=0):
    """One float64 SGD step of Gluon's Trainer against torch.optim.SGD on
    the same weights and gradient: the largest gap relative to the
    update, with PyTorch given `recipe`'s lr and wd as they are and as
    MXNet holds them (`as_mxnet_holds`)."""
    rng = onp.random.RandomState(seed)
    w0, g0 = rng.randn(size), rng.randn(size)
    w = gluon.Parameter('w', shape=(size,), dtype='float64',
                        init=mx.init.Zero())
    w.initialize(ctx=mx.cpu())
    w.set_data(array(w0, dtype='float64'))
    trainer = gluon.Trainer([w], 'sgd', {'learning_rate': recipe.lr,
                                         'wd': recipe.wd})
    with autograd.record():
        (w.data() * array(g0, dtype='float64')).sum().backward()
    trainer.step(1)
    moved = w.data().asnumpy()
    gaps = []
    for lr, wd in ((recipe.lr, recipe.wd),
                   (as_mxnet_holds(recipe.lr), as_mxnet_holds(recipe.wd))):
        t = torch.tensor(w0, requires_grad=True)
        t.grad = torch.tensor(g0)
        torch.optim.SGD([t], lr=lr, weight_decay=wd).step()
        gaps.append(float(onp.abs(t.detach().numpy() - moved).max() /
                          onp.abs(moved - w0).max()))
    return tuple(gaps)


def logits_gaps(net, torch_net, X, seed, num_classes):
    """The same net's float32 logits on X (inference mode), relative to
    their largest value: PyTorch against Gluon, and Gluon from weights x
    (1 + eps noise, float32's machine epsilon) against Gluon."""
    logits = net(X).asnumpy()
    torch_net.eval()
    with torch.no_grad():
        theirs = torch_net(tp.to_torch(X)).numpy()
    nudged = perturbed_copy(net, num_classes, tp.gluon_backbone(net), seed,
                            'float32')(X).asnumpy()
    scale = onp.abs(logits).max()
    return (float(onp.abs(theirs - logits).max() / scale),
            float(onp.abs(nudged - logits).max() / scale))


def num_values(net):
    """How many numbers a Gluon net holds (running statistics too)."""
    return sum(int(onp.prod(p.shape)) for p in net.collect_params().values())


def differences(voc_dir, batch_size=4, crop=CROP, seed=0,
                num_classes=21, index_labels=False):
    """Each difference between the two chapters, measured on one batch of
    `batch_size` crops: a list of {'aspect', 'mxnet', 'pytorch' (what
    each chapter does), 'measured' (in words), 'values' (the numbers the
    words give), 'matched' (what the matched settings do about it:
    'neutralised: how', 'remains: why' or 'the same in both
    chapters')}."""
    textbook = recipes('textbook')
    seed_everything(seed)
    dataset = SegDataset(True, crop, voc_dir, index_labels=index_labels)
    X, y = next(iter(gluon.data.DataLoader(dataset, batch_size)))
    rows = []

    def row(aspect, mxnet, pytorch, measured, matched, **values):
        rows.append({'aspect': aspect, 'mxnet': mxnet, 'pytorch': pytorch,
                     'measured': measured, 'values': values,
                     'matched': matched})

    v1 = recipes('matched')[0]
    net, torch_net = initial_nets(num_classes, v1, v1, seed)
    arithmetic = logits_gaps(net, torch_net, X, seed, num_classes)
    gap = onp.abs(build_fcn(num_classes)[-1].weight.data().asnumpy() -
                  tp.d2l_fcn(num_classes).transpose_conv.weight.detach()
                  .numpy()).max()
    counts = [num_values(n) for n in (build_fcn(num_classes, 'resnet18_v2'),
                                       net)]
    row('backbone', 'resnet18_v2 (pre-activation, BatchNorm on the input)',
        'resnet18 (v1, post-activation)',
        f'{counts[0]:,} vs {counts[1]:,} values (weights and running '
        'statistics); different functions',
        'neutralised: both nets take the one backbone asked for',
        resnet18_v2=counts[0], resnet18_v1=counts[1])
    name = 'final_conv.weight'
    g_grad, g_step = gluon_grad_and_update(net, X, y, textbook[0], name)
    t_grad, t_step = torch_grad_and_update(torch_net, X, y, textbook[1],
                                           name)
    grad_ratio = float(onp.abs(t_grad).sum() / onp.abs(g_grad).sum())
    row('loss reduction', 'mean over pixels, trainer.step(batch_size): '
        'gradient of the batch mean', 'mean over pixels, l.sum() over the '
        'batch: gradient of the batch sum',
        f'PyTorch gradient / Gluon gradient = {grad_ratio:.3f} '
        f'(batch {batch_size})',
        'neutralised: both take the gradient of the batch mean',
        ratio=grad_ratio, batch_size=batch_size)
    step_ratio = float(onp.abs(t_step).sum() / onp.abs(g_step).sum())
    lr_times_batch = textbook[1].lr / textbook[0].lr * batch_size
    row('learning rate', f'{textbook[0].lr:g}', f'{textbook[1].lr:g}',
        f'update size PyTorch / Gluon on the same batch = '
        f'{step_ratio:.4f} (lr ratio x batch = {lr_times_batch:.4f})',
        'neutralised: both take one learning rate',
        ratio=step_ratio, lr_ratio_times_batch=lr_times_batch)
    g_decay, t_decay = decay_per_step(textbook, batch_size)
    row('weight decay placement', f'wd {textbook[0].wd:g} added to the '
        'rescaled (mean) gradient', f'weight_decay {textbook[1].wd:g} added '
        'to the summed gradient', f'a weight of 1 with no data gradient '
        f'shrinks by {g_decay:.1e} vs {t_decay:.1e} a step; relative to '
        f'the data term PyTorch decays {batch_size}x less',
        'neutralised: both add wd to the gradient of the batch mean',
        gluon_shrink=g_decay, pytorch_shrink=t_decay)
    X_small = X[:, :, :4, :4]  # few values, so n/(n-1) shows
    mean_gap, var_ratio = batchnorm_update(X_small)
    n = X_small.shape[0] * 16
    row('BatchNorm momentum', 'momentum 0.9 = weight of the old running '
        'value; running var from the biased batch variance',
        'momentum 0.1 = weight of the new value; unbiased batch variance',
        f'on a 4x4 corner of the batch (n = {X_small.shape[0]} images x 16 '
        f'pixels = {n} values a channel): running mean gap {mean_gap:.1e} '
        f'(the same update); variance increment ratio {var_ratio:.5f} = '
        f'n/(n-1) = {n / (n - 1):.5f}',
        "neutralised: PyTorch keeps MXNet's running statistics "
        '(torch_port.use_gluon_batchnorm)', mean_gap=mean_gap,
        variance_ratio=var_ratio, n=n)
    stds = init_std(num_classes, seed)
    row('1x1 conv initialisation', 'Xavier uniform, bias 0',
        'PyTorch default (Kaiming uniform a=sqrt(5)), bias uniform',
        f'weight std {stds[0]:.4f} vs {stds[2]:.4f}, bias std {stds[1]:.4f}'
        f' vs {stds[3]:.4f}',
        "neutralised: PyTorch starts from Gluon's initial weights",
        stds=stds)
    raw = np.array(onp.random.RandomState(seed).randint(
        0, 256, (2, 8, 8, 3)), dtype='uint8')
    norm_gap = normalization_gap(raw)
    row('input normalisation', 'ImageNet mean/std on [0, 1] pixels (and '
        'resnet18_v2 adds a BatchNorm on the input)', 'ImageNet mean/std '
        '(transforms.Normalize)', f'largest gap on the same images '
        f'{norm_gap:.1e} (normalised pixel values)',
        'the same in both chapters', gap=norm_gap)
    row('transposed conv initialisation', 'bilinear_kernel(64)',
        'bilinear_kernel(64)', f'largest weight gap {gap:.1e}',
        'the same in both chapters', gap=float(gap))
    exact, held = update_gaps(v1)
    row('optimiser precision', f'SGD holds lr {v1.lr:g} and wd {v1.wd:g} '
        f'as float32 ({as_mxnet_holds(v1.lr):.11f}, '
        f'{as_mxnet_holds(v1.wd):.11g}), also in float64',
        'lr and weight_decay are Python floats (float64)',
        f'one float64 step differs by {exact:.1e} of the update; by '
        f'{held:.1e} with MXNet\'s float32 values',
        "neutralised: PyTorch gets MXNet's float32 values",
        exact=exact, held=held)
    eps = perturbation('float32')
    row('arithmetic', f'MXNet {mx.__version__} (oneDNN) kernels',
        f'PyTorch {torch.__version__} kernels', f'float32 logits of the '
        f'same weights on the same batch differ by {arithmetic[0]:.1e} of '
        f'their largest; Gluon from weights x (1 + {eps:.1e} noise): '
        f'{arithmetic[1]:.1e}',
        'remains: two libraries round differently; the controls show '
        'what rounding does to training', logits_gap=arithmetic[0],
        control_gap=arithmetic[1])
    return rows
