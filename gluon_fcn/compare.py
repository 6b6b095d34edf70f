"""The MXNet chapter against the PyTorch chapter, side by side.

`compare` trains a Gluon FCN and the d2l PyTorch FCN of `torch_port` on
the same batches in the same order from the same initial weights, in two
modes: 'textbook' (each framework as its chapter has it) and 'matched'
(the same backbone and the same effective update, so the curves
coincide). `differences` measures every way the two chapters differ.
"""
import dataclasses
import os

import mxnet as mx
import numpy as onp
import torch
from mxnet import autograd, gluon, np
from tqdm import tqdm

from . import torch_port as tp
from . import viz
from .data import RGB_MEAN, RGB_STD, VOCSegDataset, normalize_image
from .errors import FCNError
from .files import save_json
from .model import build_fcn
from .run import resolve_classes, resolve_data
from .train import accuracy, seed_everything, train_batch


@dataclasses.dataclass
class Recipe:
    """How one framework trains: its chapter's choices or matched ones."""
    backbone: str
    lr: float
    wd: float
    loss_sum: bool = False      # torch: d2l's l.sum() over the batch
    gluon_bn: bool = False      # torch: MXNet's running variance
    torch_init: bool = False    # torch: keep PyTorch's 1x1 conv init


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
                Recipe(backbone, lr, 1e-3, gluon_bn=True))
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


def perturbed_copy(net, num_classes, backbone, seed, dtype, scale=1e-7):
    """The control: a Gluon FCN with `net`'s weights times (1 + `scale` x
    standard normal noise), about one float32 rounding step."""
    copy = build_fcn(num_classes, backbone)
    rng = onp.random.RandomState(seed)
    for mine, theirs in zip(copy.collect_params().values(),
                            net.collect_params().values()):
        value = theirs.data().asnumpy()
        noise = 1 + scale * rng.standard_normal(value.shape)
        mine.set_data(np.array(value * noise, dtype=value.dtype))
    copy.cast(dtype)
    return copy


def gluon_stepper(net, recipe):
    """step(X, y) -> (loss sum, correct pixels) for a Gluon FCN."""
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {
        'learning_rate': recipe.lr, 'wd': recipe.wd})
    loss = gluon.loss.SoftmaxCrossEntropyLoss(axis=1)
    return lambda X, y: train_batch(net, X, y, loss, trainer, [mx.cpu()])


def torch_stepper(net, recipe):
    """step(X, y) for the d2l PyTorch FCN, on MXNet arrays."""
    optimizer = torch.optim.SGD(net.parameters(), lr=recipe.lr,
                                weight_decay=recipe.wd)
    return lambda X, y: torch_train_batch(
        net, tp.to_torch(X), tp.to_torch(y).long(), optimizer,
        recipe.loss_sum)


def compare(voc_dir, settings='textbook', steps=None, epochs=1,
            batch_size=8, crop=(320, 480), seed=0, num_classes=21,
            backbone='resnet18_v1', index_labels=False, dtype='float32',
            lr=0.1, progress=True):
    """Train both frameworks on the same batches; the per-step figures.

    Returns a dict: settings, both recipes and `steps`, a list of
    {'step', 'epoch', 'gluon_loss', 'torch_loss', 'gluon_acc',
    'torch_acc'} with the loss averaged over the batch's examples and the
    accuracy over its pixels. Under 'matched' a control runs too
    ('control_loss', 'control_acc'): Gluon again from weights perturbed
    by ~1e-7, which shows how far float32 rounding alone carries a run
    from scratch. `dtype` 'float64' runs everything in double precision.
    """
    gluon_recipe, torch_recipe = recipes(settings, backbone, lr)
    seed_everything(seed)
    dataset = VOCSegDataset(True, crop, voc_dir, index_labels=index_labels)
    train_iter = gluon.data.DataLoader(dataset, batch_size, shuffle=True,
                                       last_batch='discard')
    if len(train_iter) == 0:
        raise FCNError(f'{voc_dir}: fewer train images of at least '
                       f'{crop[0]}x{crop[1]} than --batch-size {batch_size}')
    net, torch_net = initial_nets(num_classes, gluon_recipe, torch_recipe,
                                  seed)
    runs = {}
    if settings == 'matched':
        runs['control'] = gluon_stepper(perturbed_copy(
            net, num_classes, backbone, seed, dtype), gluon_recipe)
    net.cast(dtype)
    torch_net.to(getattr(torch, dtype))
    runs.update(gluon=gluon_stepper(net, gluon_recipe),
                torch=torch_stepper(torch_net, torch_recipe))
    records = []
    total = steps or epochs * len(train_iter)
    bar = tqdm(total=total, disable=not progress, desc=settings,
               leave=False)
    for epoch in range(epochs if steps is None else 10 ** 9):
        seed_everything(seed + epoch)
        for X, y in train_iter:
            if len(records) == total:
                break
            X, y = X.astype(dtype), y.astype(dtype)
            record = {'step': len(records) + 1, 'epoch': epoch + 1}
            for name, step in runs.items():
                l, correct = step(X, y)
                record.update({f'{name}_loss': l / len(X),
                               f'{name}_acc': correct / y.size})
            records.append(record)
            bar.update()
        if len(records) == total:
            break
    bar.close()
    return {'settings': settings, 'data': voc_dir, 'crop': list(crop),
            'batch_size': batch_size, 'seed': seed, 'dtype': dtype,
            'gluon': dataclasses.asdict(gluon_recipe),
            'torch': dataclasses.asdict(torch_recipe), 'steps': records}


SIDES = (('gluon', 'MXNet Gluon'), ('torch', 'PyTorch'),
         ('control', 'Gluon, weights x (1 + 1e-7 noise)'))


def max_gap(result, other='torch'):
    """The largest |Gluon - other| over the steps: (loss, accuracy);
    `other` 'torch' or (under matched) 'control'."""
    steps = result['steps']
    return (max(abs(r['gluon_loss'] - r[f'{other}_loss']) for r in steps),
            max(abs(r['gluon_acc'] - r[f'{other}_acc']) for r in steps))


def write_comparison(result, rows, out):
    """compare.json (steps and the differences table) and compare.png."""
    os.makedirs(out, exist_ok=True)
    result = dict(result, differences=rows)
    save_json(result, os.path.join(out, 'compare.json'))
    steps = result['steps']
    panels = {what: {name: [r[f'{side}_{key}'] for r in steps]
                     for side, name in SIDES if f'{side}_loss' in steps[0]}
              for key, what in (('loss', 'train loss'),
                                ('acc', 'train accuracy'))}
    viz.save_panels([r['step'] for r in steps], panels, 'step',
                    os.path.join(out, 'compare.png'))
    return result


# ---- the differences between the two chapters, each measured ----------

def gluon_grad_and_update(net, X, y, recipe, name):
    """The gradient Trainer.step applies to `name` and the update it makes,
    for one batch (as numpy)."""
    param = dict(zip(param_names(net), net.collect_params().values()))[name]
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {
        'learning_rate': recipe.lr, 'wd': recipe.wd})
    loss = gluon.loss.SoftmaxCrossEntropyLoss(axis=1)
    before = param.data().asnumpy()
    with autograd.record():
        l = loss(net(X), y)
    l.backward()
    grad = param.grad().asnumpy() / len(X)  # Trainer's rescale_grad
    trainer.step(len(X))
    return grad, param.data().asnumpy() - before


def param_names(net):
    """Gluon parameter names as d2l's PyTorch keys (same order)."""
    return [key for _, key in tp.param_pairs(net, tp.template(net))]


def torch_grad_and_update(net, X, y, recipe, name):
    optimizer = torch.optim.SGD(net.parameters(), lr=recipe.lr,
                                weight_decay=recipe.wd)
    param = dict(net.named_parameters())[name]
    before = param.detach().clone()
    net.train()
    optimizer.zero_grad()
    l = tp.d2l_loss(net(X), y)
    (l.sum() if recipe.loss_sum else l.mean()).backward()
    grad = param.grad.detach().clone()
    optimizer.step()
    return grad.numpy(), (param.detach() - before).numpy()


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


def differences(voc_dir, batch_size=4, crop=(64, 96), seed=0,
                num_classes=21, index_labels=False):
    """Each difference between the two chapters with what the tool
    measured: a list of {'aspect', 'mxnet', 'pytorch', 'measured'}."""
    textbook = recipes('textbook')
    seed_everything(seed)
    dataset = VOCSegDataset(True, crop, voc_dir, index_labels=index_labels)
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
    counts = [sum(int(onp.prod(p.shape)) for p in n.collect_params().values()) for n in
              (build_fcn(num_classes, 'resnet18_v2'), net)]
    row('backbone', 'resnet18_v2 (pre-activation, BatchNorm on the input)',
        'resnet18 (v1, post-activation)',
        f'{counts[0]:,} vs {counts[1]:,} values; different functions')
    name = 'final_conv.weight'
    g_grad, g_step = gluon_grad_and_update(net, X, y, textbook[0], name)
    t_grad, t_step = torch_grad_and_update(
        torch_net, tp.to_torch(X), tp.to_torch(y).long(), textbook[1], name)
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


def format_steps(result):
    """A line per step: both losses and accuracies, then the largest gap.
    """
    control = 'control_loss' in result['steps'][0]
    lines = ['step  gluon loss  torch loss  gluon acc  torch acc' +
             ('  control loss' if control else '')]
    for r in result['steps']:
        lines.append(f'{r["step"]:4d}  {r["gluon_loss"]:10.4f}  '
                     f'{r["torch_loss"]:10.4f}  {r["gluon_acc"]:9.4f}  '
                     f'{r["torch_acc"]:9.4f}' +
                     (f'  {r["control_loss"]:12.4f}' if control else ''))
    loss_gap, acc_gap = max_gap(result)
    lines.append(f'largest gap Gluon - PyTorch over {len(result["steps"])} '
                 f'steps: loss {loss_gap:.2e}, accuracy {acc_gap:.2e} '
                 f'({result["settings"]}, {result["dtype"]})')
    if 'control_loss' in result['steps'][0]:
        loss_gap, acc_gap = max_gap(result, 'control')
        lines.append(f'largest gap Gluon - Gluon from weights x (1 + 1e-7 '
                     f'noise): loss {loss_gap:.2e}, accuracy {acc_gap:.2e}')
    return '\n'.join(lines)


def run_compare(config, settings, out, steps=None, epochs=1,
                backbone='resnet18_v1', dtype='float32', lr=0.1,
                progress=True):
    """`gluon-fcn compare`: both chapters on the data of a TrainConfig;
    writes compare.json and compare.png to `out`, prints the step table
    and the measured differences. Returns the result dict."""
    voc_dir = resolve_data(config)
    classes, index_labels = resolve_classes(config, voc_dir)
    result = compare(voc_dir, settings, steps, epochs, config.batch_size,
                     config.crop, config.seed, len(classes), backbone,
                     index_labels, dtype, lr, progress)
    rows = differences(voc_dir, config.batch_size, seed=config.seed,
                       num_classes=len(classes),
                       index_labels=index_labels)
    result = write_comparison(result, rows, out)
    print(format_steps(result))
    print()
    print(format_rows(rows))
    print(f'\nwrote {out}/compare.json and {out}/compare.png')
    return result
