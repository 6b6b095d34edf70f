"""`gluon-fcn compare`: both chapters side by side on a run's data, with
compare.json, compare.png and the printed tables.
"""
import os

from ..compare.differences import differences, format_rows
from ..compare.run import SIDES, compare, format_steps
from ..core.files import save_json
from ..core.labels import resolve_classes
from . import figures
from .runs import data_folder


def write_comparison(result, rows, out):
    """compare.json (steps and the differences table) and compare.png."""
    result = dict(result, differences=rows)
    save_json(result, os.path.join(out, 'compare.json'))
    steps = result['steps']
    panels = {what: {name: [r[f'{side}_{key}'] for r in steps]
                     for side, name in SIDES if f'{side}_loss' in steps[0]}
              for key, what in (('loss', 'train loss'),
                                ('acc', 'train accuracy'))}
    figures.save_panels([r['step'] for r in steps], panels, 'step',
                        os.path.join(out, 'compare.png'),
                        title=f'MXNet Gluon and PyTorch, '
                              f'{result["settings"]} settings, '
                              f'{result["dtype"]}')
    return result


def run_compare(config, settings, out, steps=None, epochs=1,
                backbone='resnet18_v1', dtype='float32', lr=0.1,
                progress=True):
    """Both chapters on the data of a TrainConfig; writes compare.json and
    compare.png to `out`, prints the step table and the measured
    differences. Returns the result dict."""
    voc_dir = data_folder(config, progress)
    classes, index_labels = resolve_classes(config.classes, voc_dir)
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
