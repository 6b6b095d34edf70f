"""Every PNG the project writes: curves, prediction grids, overlays, IoU
bars and comparison panels, each with a title, axis labels and a legend
(of the classes present, by colour and name, where masks are shown), so
it can go on a slide as it is.

Figures are drawn on matplotlib's Agg canvas directly, never through
pyplot, so the package needs no display and leaves the backend of a
notebook or an application that imports it alone.
"""
import os

import numpy as onp
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ..core.dataset import example_paths, read_image
from ..core.evaluate import read_label
from ..core.files import atomic_path, save_json
from ..core.labels import IGNORE_LABEL, VOC_BORDER, class_colours
from ..core.predict import colorize, predict_mask

CURVE_LEGEND = ('train loss', 'train acc', 'test acc')
CURVE_FMTS = ('-', 'm--', 'g-.')  # d2l Animator's
ROW_TITLES = ('image', 'prediction', 'label')
RANKING_TITLE = ('Best and worst whole images by object IoU: the mean IoU '
                 'of the classes\nother than background in label or '
                 'prediction ({labels} labels; 0 for an empty prediction)')


def subplots(nrows=1, ncols=1, **kwargs):
    """pyplot.subplots without pyplot: (figure, axes) on an Agg canvas."""
    fig = Figure(figsize=kwargs.pop('figsize', None))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=100, bbox_inches='tight')


def _to_numpy(x):
    return x.asnumpy() if hasattr(x, 'asnumpy') else onp.asarray(x)


def save_curves(points, epochs, num_epochs, path, title='Training',
                labels=None):
    """The chapter's Animator plot (train loss, train acc, test acc) and
    the test mIoU that training prints, over epochs.

    `points` are (x, loss, train acc, test acc) tuples, None for no
    value; `epochs` the per-epoch records (with 'epoch', 'test_miou');
    `labels` the convention ('d2l', 'voc') the legend names for the mIoU.
    """
    fig, ax = subplots(figsize=(4.5, 3))
    for k, (label, fmt) in enumerate(zip(CURVE_LEGEND, CURVE_FMTS)):
        xy = [(p[0], p[k + 1]) for p in points if p[k + 1] is not None]
        if xy:
            ax.plot(*zip(*xy), fmt, label=label)
    miou = [(r['epoch'], r['test_miou']) for r in epochs
            if r.get('test_miou') == r.get('test_miou')]  # not NaN
    if miou:
        ax.plot(*zip(*miou), 'c:', marker='.', label='test mIoU' + (
            f' ({labels} labels)' if labels else ''))
    ax.set_xlabel('epoch')
    ax.set_ylabel('loss; accuracy and mIoU (0-1)')
    ax.set_xlim([1, num_epochs] if num_epochs > 1 else [0, 1])
    ax.set_ylim([0, max([1.0] + [p[1] for p in points if p[1]])])
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid()
    _save(fig, path)


def outline(picture, mask=None):
    """`picture` (H, W, 3) with a white line, two pixels wide, where the
    class of `mask` changes: VOC's cat (64, 0, 0) is near-black, and the
    line shows it apart from the black background.

    `mask` is (H, W) class indices or an (H, W, 3) colour label; None
    takes the colours of `picture` itself (a coloured mask)."""
    picture = _to_numpy(picture)
    mask = picture if mask is None else _to_numpy(mask)
    if mask.ndim == 3:  # one number a colour
        mask = mask.astype(onp.int64) @ onp.array([65536, 256, 1])
    edge = onp.zeros(mask.shape, bool)
    down, right = mask[1:] != mask[:-1], mask[:, 1:] != mask[:, :-1]
    edge[1:] |= down  # both pixels of each change: visible when shrunk
    edge[:-1] |= down
    edge[:, 1:] |= right
    edge[:, :-1] |= right
    drawn = picture.copy()
    drawn[edge] = 255 if picture.dtype == onp.uint8 else 1.0
    return drawn


def class_legend(fig, masks, classes, colours):
    """A legend just below the lowest axes of `fig` of the classes present
    in `masks` (class index arrays), with their colours and names; VOC's
    void 255 too."""
    present = sorted(set().union(*(onp.unique(_to_numpy(m)).tolist()
                                   for m in masks)))
    handles = [Patch(color=onp.array(colours[i]) / 255, label=classes[i])
               for i in present if i < len(classes)]
    if IGNORE_LABEL in present:
        handles.append(Patch(color=onp.array(VOC_BORDER) / 255,
                             label='void (ignored)'))
    if handles:
        for ax in fig.axes:  # images shrink their axes to their aspect
            ax.apply_aspect()
        bottom = min(ax.get_position().y0 for ax in fig.axes)
        gap = 0.02 / fig.get_figheight()  # 0.02 inch, as a fraction
        fig.legend(handles=handles, loc='upper center', frameon=False,
                   ncol=min(len(handles), 6), fontsize=8,
                   bbox_to_anchor=(0.5, bottom - gap))


def save_prediction_grid(images, preds, labels, path, classes,
                         titles=None, title='Predictions', colours=None):
    """The chapter's last figure: a column per image; rows titled image,
    prediction, label; a legend of the classes present.

    `preds` and `labels` are (H, W) class indices; `titles` one per
    column."""
    colours = colours or class_colours()
    n = len(images)
    fig, axes = subplots(3, n, squeeze=False, figsize=(2.2 * n, 6.6))
    rows = (images, [outline(colorize(p, colours), p) for p in preds],
            [outline(colorize(y, colours), y) for y in labels])
    for r, (row, name) in enumerate(zip(rows, ROW_TITLES)):
        for c, img in enumerate(row):
            ax = axes[r][c]
            ax.imshow(_to_numpy(img))
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=10)
            if r == 0 and titles:
                ax.set_title(titles[c], fontsize=8)
    fig.suptitle(title)
    class_legend(fig, list(preds) + list(labels), classes, colours)
    _save(fig, path)


def save_iou_bars(per_class_iou, path, title='IoU per class'):
    """A bar per class of its IoU; classes without pixels are marked."""
    names = list(per_class_iou)
    values = [per_class_iou[k] for k in names]
    fig, ax = subplots(figsize=(max(4, 0.45 * len(names)), 3))
    ax.bar(range(len(names)), [v or 0 for v in values], color='tab:blue',
           label='IoU (n/a: class absent from labels and predictions)')
    for i, v in enumerate(values):
        ax.text(i, (v or 0) + 0.01, 'n/a' if v is None else f'{v:.2f}',
                ha='center', fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha='right', fontsize=8)
    ax.set_ylim([0, 1.15])
    ax.set_xlabel('class')
    ax.set_ylabel('IoU')
    ax.set_title(title)
    ax.legend(fontsize=7, loc='upper right')
    _save(fig, path)


def blend(img, mask, colours, alpha=0.5, background=0):
    """(H, W, 3) uint8: the mask's colours blended over the image where
    the class is not `background`, the image as it is there (everywhere
    blended where `background` is None, as for ADE20K)."""
    img, mask = _to_numpy(img), _to_numpy(mask)
    mix = img * (1 - alpha) + colorize(mask, colours) * alpha
    if background is not None:
        mix = onp.where((mask != background)[..., None], mix, img)
    return mix.round().astype(onp.uint8)


def save_overlay(img, mask, path, classes, title=None, alpha=0.5,
                 colours=None, background=0):
    """The mask's colours blended over the image (`blend`: not over the
    `background` class), titled, with a legend of the classes present.
    """
    colours = colours or class_colours()
    mask = _to_numpy(mask)
    h, w = mask.shape
    fig, ax = subplots(figsize=(6, 6 * h / w + 0.6))
    ax.imshow(outline(blend(img, mask, colours, alpha, background), mask))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or os.path.basename(path))
    class_legend(fig, [mask], classes, colours)
    _save(fig, path)


def save_panels(x, panels, xlabel, path, title=None, log=()):
    """Side-by-side panels of named curves over a shared x axis.

    `panels` maps a panel title to {curve name: values}; the first curve
    is drawn solid and the others dashed, so coinciding curves show. The
    panels named in `log` have a logarithmic y axis. Whole-number x
    values (steps, epochs) get whole-number ticks.
    """
    whole = all(float(v).is_integer() for v in x)
    fig, axes = subplots(1, len(panels), squeeze=False,
                         figsize=(4 * len(panels), 3))
    for ax, (name, curves) in zip(axes[0], panels.items()):
        for k, (label, values) in enumerate(curves.items()):
            ax.plot(x, values, '-' if k == 0 else '--', label=label)
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        if name in log:
            ax.set_yscale('log')
        if whole:  # no step 1.5
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
        ax.grid()
    fig.tight_layout()  # y labels clear of the panel before
    if title:  # above the panels' own titles
        fig.suptitle(title, y=1.04)
    _save(fig, path)


def best_and_worst(scores, n=3):
    """(best, worst): up to `n` (name, score) each, best first and worst
    first, never the same image in both (a small split is shared out);
    an image with no valid pixel (NaN) ranks lowest."""
    ranked = sorted(scores, key=lambda s: s[1] if s[1] == s[1] else -1)
    num_best = min(n, (len(ranked) + 1) // 2)
    num_worst = min(n, len(ranked) - num_best)
    best = ranked[len(ranked) - num_best:][::-1]
    return best, ranked[:num_worst]


def save_eval_report(net, voc_dir, metrics, scores, json_path, classes,
                     labels='voc', window=(320, 480), stride=None, ctx=None,
                     n=3, colours=None):
    """The JSON, a per-class IoU bar chart and a best/worst image grid
    (image / prediction / label, in `colours`, VOC's by default) beside
    it: `<stem>_iou.png`, `<stem>_best_worst.png`. `scores` are each
    image's (name, object IoU), `gluon_fcn.core.metrics.object_iou`."""
    save_json(metrics, json_path)
    stem = os.path.splitext(json_path)[0]
    save_iou_bars(metrics['per_class_iou'], f'{stem}_iou.png',
                  title=f'IoU per class, {metrics["split"]} split, '
                        f'{labels} labels (mIoU {metrics["mean_iou"]:.3f})')
    best, worst = best_and_worst(scores, n)
    images, preds, truths, titles = [], [], [], []
    for rank, (name, score) in [(f'best {i + 1}', s) for i, s in
                               enumerate(best)] + \
            [(f'worst {i + 1}', s) for i, s in enumerate(worst)]:
        img = read_image(example_paths(voc_dir, name)[0])
        images.append(img)
        preds.append(predict_mask(net, img, window, stride, ctx))
        truths.append(read_label(voc_dir, name, labels))
        score = 'n/a' if score != score else f'{score:.2f}'  # NaN: none
        titles.append(f'{rank}: {name}\nobject IoU {score}')
    save_prediction_grid(images, preds, truths, f'{stem}_best_worst.png',
                         classes, titles, title=RANKING_TITLE.format(
                             labels=labels), colours=colours)
