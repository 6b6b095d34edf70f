"""The report of `gluon-fcn reproduce`: `reproduce.json` (the book's
figures, this run's, the recipe, the machine, the time),
`reproduce.md` (the same as tables) and `curves.png` (this run's
curves with the book's final figures marked), each written atomically.
"""
import datetime
import os
import platform
import textwrap

import mxnet as mx

from ..core import book
from ..core.files import atomic_path, save_json, write_text
from ..fast.native import cpu_model
from ..threads import physical_cores
from .figures import CURVE_FMTS, CURVE_LEGEND, subplots

KEYS = ('loss', 'train_acc', 'test_acc')


def machine(edition):
    """The CPU (its model name, physical cores) and GPUs the run saw."""
    found = {'cpu': cpu_model(), 'cores': physical_cores(),
             'platform': platform.platform(), 'mxnet': mx.__version__,
             'gpus': mx.context.num_gpus()}
    if edition == 'pytorch':
        import torch
        found.update(torch=torch.__version__,
                     gpus=torch.cuda.device_count(),
                     gpu_names=[torch.cuda.get_device_name(i) for i in
                                range(torch.cuda.device_count())])
    return found


def points_of(result):
    """The Animator's points: `train_ch13`'s, or one a figure per epoch
    (v1's `train` prints its figures once an epoch)."""
    if result.get('points'):
        return [tuple(p) for p in result['points']]
    points = []
    for r in result['epochs']:
        points += [(r['epoch'], r['loss'], r['train_acc'], None),
                   (r['epoch'], None, None, r['test_acc'])]
    return points


def report(edition, recipe, result, verdict, extra):
    """The JSON object of a run."""
    e = book.EDITIONS[edition]
    epochs, batch_size, crop = recipe
    final = result['epochs'][-1]
    return {
        'edition': edition, 'title': e.title, 'code': e.code,
        'book': dict(e.figures, printed=e.printed, source=e.source,
                     recipe=e.recipe(), spread=list(e.spread),
                     spread_source=e.spread_source,
                     examples_per_sec=e.examples_per_sec,
                     devices=e.devices),
        'recipe': dict(e.recipe(), epochs=epochs, batch_size=batch_size,
                       crop=list(crop), data_loader_workers=0),
        'book_recipe': not verdict.changed,
        'changed': list(verdict.changed),
        'run': {'epochs': result['epochs'],
                'final': {k: final[k] for k in KEYS},
                'gaps': {k: round(final[k] - e.figures[k], 4)
                         for k in KEYS},
                'examples_per_sec': result.get('examples_per_sec'),
                'devices': result['devices'],
                'printed': result['lines']},
        'verdict': {'within': verdict.within, 'gap': verdict.gap,
                    'line': verdict.line()},
        'machine': machine(edition),
        'sources': {'voc2012': extra['voc_dir'],
                    'voc2012_sha1': extra['voc_sha1'],
                    'backbone': extra['backbone']},
        'estimated_seconds': round(extra['estimated_seconds'], 1),
        'seconds': round(extra['seconds'], 1),
        'finished': datetime.datetime.now(datetime.timezone.utc)
        .isoformat(timespec='seconds'),
    }


def markdown(obj):
    """reproduce.md: the verdict, the figures against the book's, every
    epoch, the recipe and the machine."""
    b, run = obj['book'], obj['run']
    lines = [f"# Reproducing the book: {obj['title']}", '',
             f"`{obj['verdict']['line']}`", '']
    if not obj['book_recipe']:
        lines += ["**Not the book's recipe** (" + ', '.join(obj['changed'])
                  + '): no verdict.', '']
    lines += [f"Run through `{obj['code']}`. The book printed "
              f"`{b['printed']}` ({b['source']}).", '',
              '| figure | book | this run | gap |', '|---|---|---|---|']
    for k in KEYS:
        lines.append(f"| {k.replace('_', ' ')} | {b[k]} | "
                     f"{run['final'][k]:.4f} | {run['gaps'][k]:+.4f} |")
    speed = run['examples_per_sec']
    lines.append(f"| examples/sec | {b['examples_per_sec'] or 'not printed'}"
                 f" on {b['devices'] or 'its GPUs'} | "
                 f"{f'{speed:.1f}' if speed else 'not printed'} on "
                 f"{run['devices']} | |")
    lines += ['', f"Test accuracy spread of the book: "
              f"{b['spread'][0]:.3f}..{b['spread'][1]:.3f} "
              f"({b['spread_source']}).", '',
              '| epoch | loss | train acc | test acc |', '|---|---|---|---|']
    for r in run['epochs']:
        lines.append(f"| {r['epoch']} | {r['loss']:.4f} | "
                     f"{r['train_acc']:.4f} | {r['test_acc']:.4f} |")
    m, recipe = obj['machine'], obj['recipe']
    lines += ['', '| recipe | value |', '|---|---|']
    lines += [f'| {k} | {v} |' for k, v in recipe.items()]
    lines += ['', f"Machine: {m['cpu']}, {m['cores']} cores, "
              f"{m['gpus']} GPUs. Time: {obj['seconds']:.0f} s "
              f"(estimated {obj['estimated_seconds']:.0f} s of training "
              'and testing).', '']
    return '\n'.join(lines)


def save_curves(obj, path):
    """This run's Animator curves over epochs, the book's final figures
    marked at the book's last epoch and its test accuracy spread drawn
    as a bar."""
    b = obj['book']
    fig, ax = subplots(figsize=(6, 4))
    points = [tuple(p) for p in obj['points']]
    for k, (label, fmt) in enumerate(zip(CURVE_LEGEND, CURVE_FMTS)):
        xy = [(p[0], p[k + 1]) for p in points if p[k + 1] is not None]
        ax.plot(*zip(*xy), fmt, marker='.', label=f'{label} (this run)')
        colour = ax.lines[-1].get_color()
        ax.plot([b['recipe']['epochs']], [b[KEYS[k]]], marker='*',
                markersize=12, linestyle='none', color=colour,
                label=f"{label}, book: {b[KEYS[k]]}")
    low, high = b['spread']
    ax.errorbar([b['recipe']['epochs'] + 0.1], [(low + high) / 2],
                yerr=[[(high - low) / 2]], fmt='none', ecolor='grey',
                capsize=4, label=f"book's test acc spread {low}..{high}")
    ax.set_xlabel('epoch')
    ax.set_ylabel('loss / accuracy')
    ax.set_title('\n'.join([obj['title']] + textwrap.wrap(
        obj['verdict']['line'], 100)), fontsize=8)
    ax.legend(fontsize=7, loc='best')
    ax.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=100, bbox_inches='tight')


def write_report(out, edition, recipe, result, verdict, extra):
    """reproduce.json, reproduce.md and curves.png in `out`."""
    obj = report(edition, recipe, result, verdict, extra)
    obj['points'] = points_of(result)
    save_json(obj, os.path.join(out, 'reproduce.json'))
    write_text(markdown(obj), os.path.join(out, 'reproduce.md'))
    save_curves(obj, os.path.join(out, 'curves.png'))
    return obj
