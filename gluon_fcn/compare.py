"""The MXNet chapter against the PyTorch chapter, side by side.

`compare` trains a Gluon FCN and the d2l PyTorch FCN of `torch_port` on
the same batches in the same order from the same initial weights, in two
modes: 'textbook' (each framework as its chapter has it) and 'matched'
(the same backbone and the same effective update, so the curves
coincide). `gluon_fcn.differences` measures every way the two chapters
differ.
"""
import dataclasses
import os

import mxnet as mx
import numpy as onp
import torch
from mxnet import gluon, np
from tqdm import tqdm

from . import torch_port as tp
from . import viz
from .data import VOCSegDataset
from .errors import FCNError
from .files import save_json
from .model import build_fcn
from .run import resolve_classes, resolve_data
from .train import seed_everything, train_batch


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
    if control:
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
    from .differences import differences, format_rows  # it imports us
    rows = differences(voc_dir, config.batch_size, seed=config.seed,
                       num_classes=len(classes),
                       index_labels=index_labels)
    result = write_comparison(result, rows, out)
    print(format_steps(result))
    print()
    print(format_rows(rows))
    print(f'\nwrote {out}/compare.json and {out}/compare.png')
    return result
