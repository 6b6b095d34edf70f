"""The MXNet chapter against the PyTorch chapter, side by side.

`compare` trains a Gluon FCN and the d2l PyTorch FCN of `torch_port` on
the same batches in the same order from the same initial weights, in two
modes: 'textbook' (each framework as its chapter has it) and 'matched'
(the same backbone and the same effective update, so the curves
coincide). `gluon_fcn.compare.differences` measures every way the two
chapters differ.
"""
import dataclasses

import torch
from mxnet import gluon
from tqdm import tqdm

from ..core.dataset import SegDataset
from ..core.training import seed_everything
from ..errors import FCNError
from .recipes import gluon_stepper, initial_nets, perturbed_copy, recipes
from .recipes import torch_stepper


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
    dataset = SegDataset(True, crop, voc_dir, index_labels=index_labels)
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
