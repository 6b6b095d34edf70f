"""Segmentation metrics from one dataset-wide confusion matrix.

The FCN paper's Table 2 metrics (Long, Shelhamer, Darrell 2015): with
n_ij the pixels of class i predicted as j, t_i = sum_j n_ij the pixels of
class i, and k the classes,

- pixel accuracy          sum_i n_ii / sum_i t_i
- mean accuracy           (1/k) sum_i n_ii / t_i
- mean IU                 (1/k) sum_i n_ii / (t_i + sum_j n_ji - n_ii)
- frequency weighted IU   (1 / sum_k t_k) sum_i t_i n_ii / (t_i + ...)

A class with no pixels in the labels has no accuracy, and a class with no
pixels in the labels nor in the predictions has no IU: such classes are
left out of the means (their per-class value is NaN, `null` in JSON),
rather than counted as 0 or 1. Labels outside [0, k), such as VOC's void
255, are ignored.

gluoncv's `SegmentationMetric` gives pixel accuracy and mean IU only, and
counts a class absent from labels and predictions as IU 0, which lowers
the mean of any split that lacks some classes (voc-mini lacks most): its
figures equal these where every class is present (a test checks).
"""
import numpy as onp


def confusion_matrix(pred, label, num_classes):
    """(k, k) int64 counts: row = label, column = prediction.

    Pixels whose label is outside [0, k) are not counted.
    """
    pred = onp.asarray(_numpy(pred)).astype(onp.int64).ravel()
    label = onp.asarray(_numpy(label)).astype(onp.int64).ravel()
    keep = (label >= 0) & (label < num_classes)
    return onp.bincount(num_classes * label[keep] + pred[keep],
                        minlength=num_classes ** 2).reshape(
        num_classes, num_classes)


class ConfusionMatrix:
    """Accumulates a confusion matrix over a dataset."""

    def __init__(self, num_classes):
        self.num_classes = num_classes
        self.mat = onp.zeros((num_classes, num_classes), onp.int64)

    def update(self, pred, label):
        self.mat += confusion_matrix(pred, label, self.num_classes)
        return self

    def compute(self, class_names=None):
        return segmentation_metrics(self.mat, class_names)


def segmentation_metrics(hist, class_names=None):
    """Pixel accuracy, mean accuracy, per-class and mean IoU, fw IoU.

    Returns a dict; `per_class_iou` maps class names (or indices) to the
    IoU, or None for a class absent from labels and predictions.
    """
    hist = onp.asarray(hist, onp.float64)
    tp = onp.diag(hist)
    in_labels, in_preds = hist.sum(1), hist.sum(0)
    union = in_labels + in_preds - tp
    with onp.errstate(divide='ignore', invalid='ignore'):
        acc = onp.where(in_labels > 0, tp / in_labels, onp.nan)
        iou = onp.where(union > 0, tp / union, onp.nan)
    total = hist.sum()
    freq = in_labels / total if total else in_labels
    names = class_names or [str(i) for i in range(len(hist))]
    return {
        'pixel_acc': float(tp.sum() / total) if total else float('nan'),
        'mean_acc': _nanmean(acc),
        'mean_iou': _nanmean(iou),
        'fw_iou': float(onp.nansum(freq * iou)),
        'per_class_iou': {name: (None if onp.isnan(v) else float(v))
                          for name, v in zip(names, iou)},
    }


def object_iou(hist, background=0):
    """The mean IoU of the classes other than `background` that occur in
    the labels or the predictions of a (k, k) confusion matrix (every
    class with `background` None); NaN where none occurs.

    A measure that an all-background prediction cannot win, to rank
    images by: it scores 0 on any image with an object, where the mean IoU
    credits it with the background's IoU, near 1 where the object is
    small. A class predicted but absent from the labels counts 0.
    """
    hist = onp.asarray(hist, onp.float64)
    tp = onp.diag(hist)
    union = hist.sum(0) + hist.sum(1) - tp
    counted = union > 0
    if background is not None:
        counted[background] = False
    return _nanmean(onp.where(counted, tp / onp.where(counted, union, 1),
                              onp.nan))


def _nanmean(values):
    values = values[~onp.isnan(values)]
    return float(values.mean()) if values.size else float('nan')


def _numpy(x):
    return x.asnumpy() if hasattr(x, 'asnumpy') else x
