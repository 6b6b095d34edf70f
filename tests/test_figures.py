"""The figures go on a slide as they are: titles, axis labels, legends of
the classes present, best and worst images never repeated."""
import math

import numpy as onp
import pytest

from gluon_fcn.app import figures
from gluon_fcn.core.labels import class_colours

CLASSES = ('background', 'cat', 'dog', 'person')


@pytest.fixture
def drawn(monkeypatch):
    """The figures drawn instead of written: a list of matplotlib Figures.
    """
    saved = []
    monkeypatch.setattr(figures, '_save', lambda fig, path: saved.append(
        fig))
    return saved


def legend_names(fig):
    return [t.get_text() for legend in fig.legends
            for t in legend.get_texts()]


def test_prediction_grid_rows_titles_and_legend_of_classes_present(drawn):
    img = onp.zeros((8, 8, 3), 'uint8')
    pred = onp.zeros((8, 8), 'int32')
    pred[:2] = 1
    label = onp.zeros((8, 8), 'int32')
    label[4:] = 3
    label[0] = 255
    figures.save_prediction_grid([img, img], [pred, pred], [label, label],
                                 'x.png', CLASSES, ['a', 'b'], title='T')
    fig, = drawn
    axes = fig.axes
    assert [ax.get_ylabel() for ax in axes[::2]] == list(figures.ROW_TITLES)
    assert [ax.get_title() for ax in axes[:2]] == ['a', 'b']
    assert fig._suptitle.get_text() == 'T'
    assert legend_names(fig) == ['background', 'cat', 'person',
                                 'void (ignored)']


def test_curves_plot_the_test_miou_that_training_prints(drawn):
    points = [(0.5, 2.0, 0.5, None), (1, 1.5, 0.6, None),
              (1, None, None, 0.7), (2, 1.0, 0.8, None), (2, None, None, 0.75)]
    epochs = [{'epoch': 1, 'test_miou': 0.3}, {'epoch': 2, 'test_miou': 0.4}]
    figures.save_curves(points, epochs, 2, 'c.png', title='Run',
                        labels='voc')
    ax, = drawn[0].axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ['train loss', 'train acc', 'test acc',
                      'test mIoU (voc labels)']
    assert list(ax.get_lines()[-1].get_ydata()) == [0.3, 0.4]
    assert ax.get_title() == 'Run' and ax.get_xlabel() == 'epoch'
    assert ax.get_ylabel()


@pytest.mark.parametrize('n_images', [1, 2, 3, 5, 6, 9])
def test_best_and_worst_never_show_an_image_twice(n_images):
    scores = [(f'im{i}', i / 10) for i in range(n_images - 1)]
    scores.append(('empty', math.nan))  # no valid pixel: ranks lowest
    best, worst = figures.best_and_worst(scores, n=3)
    names = [name for name, _ in best + worst]
    assert len(names) == len(set(names)) == min(n_images, 6)
    assert best == sorted(best, key=lambda s: -s[1])
    assert all(b[1] >= w[1] for b in best for w in worst
               if w[1] == w[1])
    if n_images > 1:
        assert worst[0][0] == 'empty'


def test_best_and_worst_say_their_measure_and_score_a_miss_0(
        drawn, synth_voc, tmp_path):
    """A net that predicts background everywhere misses every object: each
    image scores 0 under the measure the title names."""
    from mxnet.gluon import nn
    from gluon_fcn.core.evaluate import evaluate_images
    from gluon_fcn.d2l import VOC_CLASSES

    class AllBackground(nn.HybridBlock):
        def hybrid_forward(self, F, X):  # (B, 21, H, W), class 0 wins
            return F.np.concatenate([F.np.ones_like(X[:, :1])] + [
                F.np.zeros_like(X[:, :1])] * 20, axis=1)
    net = AllBackground()
    metrics, scores = evaluate_images(net, synth_voc, 'val', VOC_CLASSES,
                                      window=(96, 128), progress=False)
    assert [score for _, score in scores] == [0.0] * len(scores)
    figures.save_eval_report(net, synth_voc, metrics, scores,
                             str(tmp_path / 'e.json'), VOC_CLASSES,
                             window=(96, 128))
    grid = drawn[-1]
    assert 'by object IoU' in grid._suptitle.get_text()
    assert 'voc labels' in grid._suptitle.get_text()
    assert all(ax.get_title().endswith('object IoU 0.00')
               for ax in grid.axes[:6])


def test_overlay_has_a_title_and_a_legend(drawn):
    img = onp.full((6, 10, 3), 200, 'uint8')
    mask = onp.zeros((6, 10), 'int32')
    mask[:, 5:] = 2
    figures.save_overlay(img, mask, 'o.png', CLASSES, title='photo.jpg')
    fig, = drawn
    assert fig.axes[0].get_title() == 'photo.jpg'
    assert legend_names(fig) == ['background', 'dog']
    mixed = figures.blend(img, mask, class_colours())
    assert (mixed[:, :5] == 200).all() and (mixed[:, 5:] != 200).any()


def test_iou_bars_are_titled_and_labelled(drawn):
    figures.save_iou_bars({'background': 0.9, 'cat': None}, 'i.png',
                          title='IoU')
    ax, = drawn[0].axes
    assert ax.get_title() == 'IoU' and ax.get_ylabel() == 'IoU'
    assert [t.get_text() for t in ax.get_xticklabels()] == \
        ['background', 'cat']
    assert 'n/a' in [t.get_text() for t in ax.texts]


def test_outline_shows_a_dark_class_on_background():
    """VOC's cat (64, 0, 0) on black gets a white outline; the insides of
    both keep their colours."""
    mask = onp.zeros((8, 8), 'int32')
    mask[2:6, 2:6] = 1
    colours = class_colours()
    picture = onp.asarray(colours, 'uint8')[mask * 8]
    drawn = figures.outline(picture, mask)
    white = (drawn == 255).all(axis=-1)
    changes = onp.zeros((8, 8), bool)  # either side of each class change
    changes[1:7, 1:7] = True
    changes[3:5, 3:5] = False
    changes[[1, 1, 6, 6], [1, 6, 1, 6]] = False  # diagonal: no change
    assert (white == changes).all()
    assert (drawn[0, 0] == 0).all() and tuple(drawn[4, 4]) == colours[8]
    # a colour label outlines the same without its class indices
    assert (figures.outline(picture) == drawn).all()


def test_overlay_legend_sits_just_below_the_image(drawn):
    """No empty band between the image and its legend, whatever the
    image's shape."""
    for h, w in ((375, 500), (200, 500), (500, 300)):
        mask = onp.zeros((h, w), 'int32')
        mask[h // 4:h // 2, w // 4:w // 2] = 8
        figures.save_overlay(onp.full((h, w, 3), 120, 'uint8'), mask,
                             'o.png', CLASSES * 3, title='photo.jpg')
        fig = drawn.pop()
        fig.canvas.draw()
        image = fig.axes[0].get_window_extent()
        legend = fig.legends[0].get_window_extent()
        gap = (image.y0 - legend.y1) / fig.dpi  # inches
        assert 0 <= gap < 0.15, (h, w, gap)
