"""Every PNG the project writes: curves, prediction grids and overlays.

Figures are drawn on matplotlib's Agg canvas directly, never through
pyplot, so the package needs no display and leaves the backend of a
notebook or an application that imports it alone.
"""
import os

import numpy as onp
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ..core.dataset import example_paths, read_image
from ..core.evaluate import read_label
from ..core.files import atomic_path, save_json
from ..core.labels import class_colours
from ..core.predict import colorize, predict_mask

CURVE_LEGEND = ('train loss', 'train acc', 'test acc')
CURVE_FMTS = ('-', 'm--', 'g-.')  # d2l Animator's


def subplots(nrows=1, ncols=1, **kwargs):
    """pyplot.subplots without pyplot: (figure, axes) on an Agg canvas."""
    fig = Figure(figsize=kwargs.pop('figsize', None))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=100, bbox_inches='tight')


def save_curves(points, num_epochs, path):
    """The chapter's Animator plot (train loss, train acc, test acc).

    `points` are (x, loss, train acc, test acc) tuples, None for no value.
    """
    fig, ax = subplots(figsize=(3.5, 2.5))
    for k, (label, fmt) in enumerate(zip(CURVE_LEGEND, CURVE_FMTS)):
        xy = [(p[0], p[k + 1]) for p in points if p[k + 1] is not None]
        if xy:
            ax.plot(*zip(*xy), fmt, label=label)
    ax.set_xlabel('epoch')
    ax.set_xlim([1, num_epochs] if num_epochs > 1 else [0, 1])
    ax.set_ylim([0, max([1.0] + [p[1] for p in points if p[1]])])
    ax.legend()
    ax.grid()
    _save(fig, path)


def show_images(imgs, num_rows, num_cols, path, titles=None, scale=2):
    """d2l's `show_images`, to a PNG: a grid of (H, W, 3) uint8 images."""
    fig, axes = subplots(num_rows, num_cols, squeeze=False,
                             figsize=(num_cols * scale, num_rows * scale))
    for i, ax in enumerate(axes.flatten()):
        ax.axis('off')
        if i < len(imgs):
            ax.imshow(_to_numpy(imgs[i]))
            if titles:
                ax.set_title(titles[i], fontsize=8)
    _save(fig, path)


def save_prediction_grid(images, preds, labels, path, titles=None):
    """The chapter's last figure: images, predictions, labels in 3 rows."""
    show_images(list(images) + list(preds) + list(labels), 3, len(images),
                path, titles=titles)


def save_iou_bars(per_class_iou, path):
    """A bar per class of its IoU; classes without pixels are marked."""
    names = list(per_class_iou)
    values = [per_class_iou[k] for k in names]
    fig, ax = subplots(figsize=(max(4, 0.45 * len(names)), 3))
    ax.bar(range(len(names)), [v or 0 for v in values], color='tab:blue')
    for i, v in enumerate(values):
        ax.text(i, (v or 0) + 0.01, 'n/a' if v is None else f'{v:.2f}',
                ha='center', fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha='right', fontsize=8)
    ax.set_ylim([0, 1.1])
    ax.set_ylabel('IoU')
    _save(fig, path)


def save_overlay(img, colored, path, alpha=0.5, where=None):
    """Blend a colour mask over an image (only `where`, an (H, W) bool
    array, if given: e.g. not over the background) and write a PNG."""
    img, colored = _to_numpy(img), _to_numpy(colored)
    mix = img * (1 - alpha) + colored * alpha
    if where is not None:
        mix = onp.where(_to_numpy(where)[..., None], mix, img)
    with atomic_path(path) as tmp:
        Image.fromarray(mix.round().astype(onp.uint8)).save(tmp, 'PNG')


def _to_numpy(x):
    return x.asnumpy() if hasattr(x, 'asnumpy') else onp.asarray(x)


def save_panels(x, panels, xlabel, path):
    """Side-by-side panels of named curves over a shared x axis.

    `panels` maps a panel title to {curve name: values}; the first curve
    is drawn solid and the others dashed, so coinciding curves show.
    """
    fig, axes = subplots(1, len(panels), squeeze=False,
                         figsize=(4 * len(panels), 3))
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for k, (name, values) in enumerate(curves.items()):
            ax.plot(x, values, '-' if k == 0 else '--', label=name)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.legend()
        ax.grid()
    _save(fig, path)


def save_eval_report(net, voc_dir, metrics, scores, json_path, classes,
                     labels='voc', window=(320, 480), stride=None, ctx=None,
                     n=3):
    """The JSON, a per-class IoU bar chart and a best/worst image grid
    (image / prediction / label) beside it: `<stem>_iou.png`,
    `<stem>_best_worst.png`."""
    save_json(metrics, json_path)
    stem = os.path.splitext(json_path)[0]
    save_iou_bars(metrics['per_class_iou'], f'{stem}_iou.png')
    # best first, then worst; an image with no valid pixel ranks lowest
    ranked = sorted(scores, key=lambda s: s[1] if s[1] == s[1] else -1)
    chosen = ranked[-n:][::-1] + ranked[:n]
    colours = class_colours()
    images, preds, truths, titles = [], [], [], []
    for name, miou in chosen:
        img = read_image(example_paths(voc_dir, name)[0])
        pred = predict_mask(net, img, window, stride, ctx)
        images.append(img)
        preds.append(colorize(pred, colours))
        truths.append(colorize(read_label(voc_dir, name, labels), colours))
        titles.append(f'{name} mIoU {miou:.2f}')
    save_prediction_grid(images, preds, truths, f'{stem}_best_worst.png',
                         titles=titles + [''] * (2 * len(titles)))
