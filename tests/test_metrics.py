"""Metrics from a confusion matrix, by hand and against gluoncv."""
import math

import mxnet as mx
import numpy as onp
import pytest

from gluon_fcn.core.metrics import (ConfusionMatrix, confusion_matrix,
                                    object_iou, segmentation_metrics)


def test_confusion_matrix_counts_and_ignores_void():
    label = onp.array([[0, 0, 1, 255], [2, 2, 1, 1]])
    pred = onp.array([[0, 1, 1, 2], [2, 0, 1, 0]])
    hist = confusion_matrix(pred, label, 3)
    assert hist.tolist() == [[1, 1, 0], [1, 2, 0], [1, 0, 1]]
    assert hist.sum() == 7  # the 255 pixel is not counted


def test_metrics_on_a_hand_made_matrix():
    # rows: label, columns: prediction
    hist = onp.array([[50, 10, 0], [5, 20, 5], [0, 0, 10]])
    m = segmentation_metrics(hist, ['bg', 'a', 'b'])
    assert m['pixel_acc'] == pytest.approx(80 / 100)
    assert m['mean_acc'] == pytest.approx((50 / 60 + 20 / 30 + 10 / 10) / 3)
    iou = [50 / (60 + 55 - 50), 20 / (30 + 30 - 20), 10 / (10 + 15 - 10)]
    assert list(m['per_class_iou'].values()) == pytest.approx(iou)
    assert m['mean_iou'] == pytest.approx(sum(iou) / 3)
    assert m['fw_iou'] == pytest.approx(
        (60 * iou[0] + 30 * iou[1] + 10 * iou[2]) / 100)


def test_absent_classes_are_left_out_of_the_means():
    # class 2 appears nowhere; class 3 only in predictions
    hist = onp.array([[8, 0, 0, 2], [0, 5, 0, 0], [0, 0, 0, 0],
                      [0, 0, 0, 0]])
    m = segmentation_metrics(hist)
    assert m['per_class_iou']['2'] is None
    assert m['per_class_iou']['3'] == 0.0
    assert m['mean_acc'] == pytest.approx((0.8 + 1.0) / 2)
    assert m['mean_iou'] == pytest.approx((0.8 + 1.0 + 0.0) / 3)
    assert math.isnan(segmentation_metrics(onp.zeros((2, 2)))['mean_iou'])


def test_agrees_with_gluoncv_segmentation_metric():
    gcv = pytest.importorskip('gluoncv.utils.metrics.segmentation')
    rng = onp.random.default_rng(0)
    n = 5
    metric = gcv.SegmentationMetric(n)
    ours = ConfusionMatrix(n)
    for _ in range(3):
        logits = rng.normal(size=(2, n, 16, 24)).astype('float32')
        label = rng.integers(0, n, size=(2, 16, 24))
        label[:, :2] = 255  # void, which gluoncv spells -1
        ours.update(logits.argmax(1), label)
        metric.update(mx.nd.array(onp.where(label == 255, -1, label)),
                      mx.nd.array(logits))
    pix_acc, miou = metric.get()
    m = ours.compute()
    # every class is present, so gluoncv's means equal the paper's
    assert m['pixel_acc'] == pytest.approx(pix_acc, rel=1e-9)
    assert m['mean_iou'] == pytest.approx(miou, rel=1e-9)


def test_an_empty_prediction_scores_0_and_ranks_below_a_partial_one():
    """The per-image score of evaluate's best/worst figure: an image whose
    object is missed scores 0, though its mean IoU counts the background's
    IoU (about 1) and the object's 0."""
    from gluon_fcn.app.figures import best_and_worst
    label = onp.zeros((10, 10), int)
    label[4:6, 4:6] = 3  # a small object
    empty = onp.zeros_like(label)
    half = empty.copy()
    half[4:6, 4] = 3  # half of the object
    empty_hist, half_hist = (confusion_matrix(p, label, 5)
                             for p in (empty, half))
    assert segmentation_metrics(empty_hist)['mean_iou'] > 0.45
    assert object_iou(empty_hist) == 0
    assert object_iou(half_hist) == pytest.approx(0.5)
    best, worst = best_and_worst([('empty', object_iou(empty_hist)),
                                  ('half', object_iou(half_hist))], n=1)
    assert (best, worst) == ([('half', 0.5)], [('empty', 0.0)])
    # a class predicted where there is none counts 0; with no background
    # class (ADE20K) every class counts
    assert object_iou(confusion_matrix(half, empty, 5)) == 0
    assert object_iou(empty_hist, background=None) == pytest.approx(
        (96 / 100 + 0) / 2)
    assert math.isnan(object_iou(confusion_matrix(empty, empty, 5)))
