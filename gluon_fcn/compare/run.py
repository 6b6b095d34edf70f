"""The MXNet chapter against the PyTorch chapter, side by side.

`compare` trains a Gluon FCN and the d2l PyTorch FCN of `torch_port` on
the same batches in the same order from the same initial weights, in two
modes: 'textbook' (each framework as its chapter has it) and 'matched'
(the same backbone and the same effective update), where Gluon runs
again from slightly perturbed weights as controls. `verdict` says whether
the two frameworks part further than the controls; `differences`
measures every way the two chapters differ.
"""
import dataclasses

import torch
from mxnet import gluon
from tqdm import tqdm

from ..core.dataset import SegDataset
from ..core.training import seed_everything
from ..errors import FCNError
from . import CONTROLS
from .recipes import (gluon_stepper, initial_nets, perturbation,
                      perturbed_copy, recipes, torch_stepper)


def compare(voc_dir, settings='textbook', steps=None, epochs=1,
            batch_size=8, crop=(320, 480), seed=0, num_classes=21,
            backbone='resnet18_v1', index_labels=False, dtype='float32',
            lr=0.1, progress=True, controls=CONTROLS):
    """Train both frameworks on the same batches; the per-step figures.

    Returns a dict: settings, dtype, both recipes and `steps`, a list of
    {'step', 'epoch', 'gluon_loss', 'torch_loss', 'gluon_acc',
    'torch_acc'} with the loss averaged over the batch's examples (each
    the mean over its pixels) and the accuracy over its pixels. Under
    'matched', `controls` more runs train too ('control_loss',
    'control_acc', a value per control): Gluon again from its weights
    times (1 + eps x standard normal noise), eps `dtype`'s machine
    epsilon, noise seeds `seed`, `seed` + 1, ...; how far they part from
    Gluon shows how far rounding alone carries a run from scratch
    (`verdict`). `dtype` 'float64' runs everything in double precision.
    """
    gluon_recipe, torch_recipe = recipes(settings, backbone, lr)
    seed_everything(seed)
    dataset = SegDataset(True, crop, voc_dir, index_labels=index_labels)
    train_iter = gluon.data.DataLoader(dataset, batch_size, shuffle=True,
                                       last_batch='discard')
    if len(train_iter) == 0:
        raise FCNError(f'{voc_dir}: {len(dataset)} train images of at '
                       f'least {crop[0]}x{crop[1]}, fewer than a batch '
                       f'({batch_size})')
    net, torch_net = initial_nets(num_classes, gluon_recipe, torch_recipe,
                                  seed)
    control_nets = [perturbed_copy(net, num_classes, gluon_recipe.backbone,
                                   seed + i, dtype)
                    for i in range(controls if settings == 'matched'
                                   else 0)]
    net.cast(dtype)
    torch_net.to(getattr(torch, dtype))
    gluon_step = gluon_stepper(net, gluon_recipe)
    torch_step = torch_stepper(torch_net, torch_recipe)
    control_steps = [gluon_stepper(n, gluon_recipe) for n in control_nets]
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
            for name, step in (('gluon', gluon_step), ('torch', torch_step)):
                record[f'{name}_loss'], record[f'{name}_acc'] = \
                    mean_figures(step(X, y), y)
            if control_steps:
                figures = [mean_figures(step(X, y), y)
                           for step in control_steps]
                record['control_loss'] = [f[0] for f in figures]
                record['control_acc'] = [f[1] for f in figures]
            records.append(record)
            bar.update()
        if len(records) == total:
            break
    bar.close()
    return {'settings': settings, 'data': voc_dir, 'crop': list(crop),
            'batch_size': batch_size, 'seed': seed, 'dtype': dtype,
            'controls': len(control_steps),
            'perturbation': perturbation(dtype),
            'gluon': dataclasses.asdict(gluon_recipe),
            'torch': dataclasses.asdict(torch_recipe), 'steps': records}


def mean_figures(figures, y):
    """(loss sum, correct pixels) of a step -> (mean loss an example,
    fraction of pixels right)."""
    loss_sum, correct = figures
    return loss_sum / len(y), correct / y.size


def max_gap(result, other='torch'):
    """The largest |Gluon - PyTorch| over the steps: (loss, accuracy)."""
    steps = result['steps']
    return (max(abs(r['gluon_loss'] - r[f'{other}_loss']) for r in steps),
            max(abs(r['gluon_acc'] - r[f'{other}_acc']) for r in steps))
