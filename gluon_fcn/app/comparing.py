"""`gluon-fcn compare`: both chapters side by side on a run's data, with
compare.json, compare.png and the printed report: what ran, a line per
step, the verdict (under matched) and the table of differences.
"""
import os
import textwrap

from ..compare import CONTROLS
from ..compare.differences import CROP, differences
from ..compare.run import compare
from ..compare.verdict import ORDER, step_gaps, verdict
from ..core.files import save_json
from ..core.labels import resolve_classes
from . import figures
from .fit import data_folder

DEFAULT_ENGINE = 'ThreadedEnginePerDevice'  # MXNet's, unless told
DISTANCE = 'loss distance from Gluon'
UNITS = ('loss: cross-entropy a pixel, averaged over the batch; acc: the '
         'fraction of pixels classified right')


def write_comparison(result, out):
    """compare.json (steps, verdict, differences) and compare.png."""
    save_json(result, os.path.join(out, 'compare.json'))
    steps = result['steps']
    panels = {}
    for key, what in (('loss', 'train loss'), ('acc', 'train accuracy')):
        curves = {'MXNet Gluon': [r[f'gluon_{key}'] for r in steps],
                  'PyTorch': [r[f'torch_{key}'] for r in steps]}
        for i in range(result['controls']):
            curves[f'control {i + 1}'] = [r[f'control_{key}'][i]
                                          for r in steps]
        panels[what] = curves
    if result['controls']:  # the verdict, drawn
        gaps = step_gaps(result)
        panels[DISTANCE] = {
            '|Gluon - PyTorch|': [g['gap'] for g in gaps],
            "controls' spread": [g['spread'] for g in gaps],
            f'{ORDER}x the spread': [ORDER * g['spread'] for g in gaps]}
    figures.save_panels([r['step'] for r in steps], panels, 'step',
                        os.path.join(out, 'compare.png'),
                        title=f'MXNet Gluon and PyTorch, '
                              f'{result["settings"]} settings, '
                              f'{result["dtype"]}, batch '
                              f'{result["batch_size"]}', log=(DISTANCE,))


def describe(recipe):
    """What one framework ran, in words."""
    words = [recipe['backbone'], f'SGD lr {recipe["lr"]:.10g}',
             f'wd {recipe["wd"]:.10g}',
             'gradient of the batch sum' if recipe['loss_sum'] else
             'gradient of the batch mean']
    if recipe['gluon_bn']:
        words.append("MXNet's BatchNorm statistics")
    if recipe['torch_init']:
        words.append("PyTorch's own 1x1 conv initialisation")
    return ', '.join(words)


def format_ran(result):
    """What this comparison trained: settings, data and both recipes."""
    crop = 'x'.join(map(str, result['crop']))
    precision = result['dtype']
    if result['engine'] != DEFAULT_ENGINE:
        precision += f' on MXNet\'s {result["engine"]}'
    lines = [f'ran: {result["settings"]} settings, {precision}, '
             f'{len(result["steps"])} steps of {result["batch_size"]} '
             f'random {crop} crops, seed {result["seed"]}',
             f'  MXNet Gluon: {describe(result["gluon"])}',
             f'  PyTorch:     {describe(result["torch"])}']
    if result['controls']:
        lines.append(f'  controls:    {result["controls"]} Gluon runs from '
                     f'its initial weights x (1 + {result["perturbation"]:.1e}'
                     f' x normal noise), noise seeds {result["seed"]}..'
                     f'{result["seed"] + result["controls"] - 1}')
    return '\n'.join(lines)


def format_steps(result):
    """A line per step: both losses and accuracies; under matched the gap,
    the controls' spread and their ratio."""
    controls = bool(result['controls'])
    head = 'step  Gluon loss  PyTorch loss  Gluon acc  PyTorch acc'
    if controls:
        head += '  |gap| loss  spread   gap/spread'
        gaps = step_gaps(result)
    lines = [UNITS, head]
    for i, r in enumerate(result['steps']):
        line = (f'{r["step"]:4d}  {r["gluon_loss"]:10.4f}  '
                f'{r["torch_loss"]:12.4f}  {r["gluon_acc"]:9.4f}  '
                f'{r["torch_acc"]:11.4f}')
        if controls:
            g = gaps[i]
            line += (f'  {g["gap"]:10.1e}  {g["spread"]:7.1e}  '
                     f'{g["ratio"]:10.2g}')
        lines.append(line)
    if controls:
        lines.append('|gap|: |Gluon - PyTorch| loss; spread: the largest '
                     '|Gluon - control| loss (at least one rounding step '
                     'of the loss)')
    return '\n'.join(lines)


def indented(sentence):
    """A sentence of evidence under a verdict's line, wrapped."""
    return textwrap.fill(sentence, 78, initial_indent='  ',
                         subsequent_indent='    ')


def format_verdict(found, result):
    """The verdict: its conclusion on the first line, short, then the
    evidence, a sentence a paragraph, indented."""
    return '\n'.join([f'verdict ({result["dtype"]}): '
                      f'{found["conclusion"]}.'] +
                     [indented(line) for line in found['evidence']])


def format_textbook_verdict(result):
    """Under textbook settings (no controls): the conclusion, then the
    largest gap."""
    largest = max(result['steps'],
                  key=lambda r: abs(r['gluon_loss'] - r['torch_loss']))
    gap = abs(largest['gluon_loss'] - largest['torch_loss'])
    evidence = (f'Largest loss gap |Gluon - PyTorch| {gap:.3g} (step '
                f'{largest["step"]}); the differences below say why, and '
                f'--settings matched sets the gap against rounding.')
    return (f'verdict (textbook, {result["dtype"]}): the two chapters '
            f'train differently, by design.\n{indented(evidence)}')


def format_differences(rows, result):
    """The chapters' differences, and what this run did about each."""
    matched = result['settings'] == 'matched'
    lines = [f'How the two chapters differ, measured on one batch of '
             f'{result["batch_size"]} {CROP[0]}x{CROP[1]} crops'
             + ('; [in brackets] what the matched settings of this run '
                'did about each:' if matched else
                " (this run's textbook settings keep each chapter's "
                'choices):')]
    for r in rows:
        status = f'  [{r["matched"]}]' if matched else ''
        lines += [f'{r["aspect"]}:{status}',
                  f'  MXNet chapter:   {r["mxnet"]}',
                  f'  PyTorch chapter: {r["pytorch"]}',
                  f'  measured:        {r["measured"]}']
    return '\n'.join(lines)


def run_compare(config, settings, out, steps=None, backbone='resnet18_v1',
                dtype='float32', controls=CONTROLS, progress=True):
    """Both chapters on the data of a TrainConfig (its batch size, crop,
    seed, classes, epochs when `steps` is None, and lr under matched);
    writes compare.json and compare.png to `out` and prints what ran,
    the steps, the verdict (matched) and the differences. Returns the
    result dict."""
    voc_dir = data_folder(config, progress)
    classes, index_labels = resolve_classes(config.classes, voc_dir)
    result = compare(voc_dir, settings, steps, config.epochs,
                     config.batch_size, config.crop, config.seed,
                     len(classes), backbone, index_labels, dtype, config.lr,
                     progress, controls)
    rows = differences(voc_dir, config.batch_size, seed=config.seed,
                       num_classes=len(classes),
                       index_labels=index_labels)
    result['engine'] = os.environ.get('MXNET_ENGINE_TYPE', DEFAULT_ENGINE)
    report = [format_ran(result), format_steps(result)]
    if result['controls']:
        result['verdict'] = verdict(result)
        report.append(format_verdict(result['verdict'], result))
    else:
        report.append(format_textbook_verdict(result))
    result['differences'] = rows
    write_comparison(result, out)
    report += [format_differences(rows, result),
               f'wrote {out}/compare.json and {out}/compare.png']
    print('\n\n'.join(report))
    return result
