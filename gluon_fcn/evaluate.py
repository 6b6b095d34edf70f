"""Whole-image evaluation of a trained FCN over a VOC-layout split.

Each image is predicted whole by sliding windows (`predict_mask`), its
label read under a convention ('d2l': the border is background; 'voc': the
border is ignored), and one confusion matrix is accumulated over the split,
from which `gluon_fcn.metrics` derives the FCN paper's figures.
"""
import os

from tqdm import tqdm

from . import viz
from .data import (index_remap, read_image, read_label_indices,
                   read_split, voc_palette)
from .files import save_json
from .metrics import ConfusionMatrix, confusion_matrix, segmentation_metrics
from .predict import label2image, predict_mask


def read_label(voc_dir, name, remap):
    """(H, W) int32 class indices of an image's label PNG, remapped under
    a label convention (`index_remap`)."""
    indices = read_label_indices(os.path.join(
        voc_dir, 'SegmentationClass', f'{name}.png')).astype('int32')
    return remap[indices].astype('int32')


def evaluate_images(net, voc_dir, split='val', classes=None, labels='voc',
                    window=(320, 480), stride=None, ctx=None,
                    progress=True):
    """Whole-image figures over a split; also each image's (name, mIoU).

    Returns (metrics dict, [(name, image mean IoU), ...]).
    """
    num_classes = len(classes)
    remap = index_remap(labels)
    total = ConfusionMatrix(num_classes)
    scores = []
    for name in tqdm(read_split(voc_dir, split), desc=f'evaluate {split}',
                     disable=not progress, leave=False):
        img = read_image(os.path.join(voc_dir, 'JPEGImages', f'{name}.jpg'))
        pred = predict_mask(net, img, window, stride, ctx)
        hist = confusion_matrix(pred, read_label(voc_dir, name, remap),
                                num_classes)
        total.mat += hist
        scores.append((name, segmentation_metrics(hist)['mean_iou']))
    metrics = total.compute(list(classes))
    metrics.update(labels=labels, images=len(scores), split=split)
    return metrics, scores


def write_report(net, voc_dir, metrics, scores, json_path, classes,
                 labels='voc', window=(320, 480), stride=None, ctx=None,
                 n=3):
    """The JSON, a per-class IoU bar chart and a best/worst image grid
    (image / prediction / label) beside it: `<stem>_iou.png`,
    `<stem>_best_worst.png`."""
    save_json(metrics, json_path)
    stem = os.path.splitext(json_path)[0]
    viz.save_iou_bars(metrics['per_class_iou'], f'{stem}_iou.png')
    # best first, then worst; an image with no valid pixel ranks lowest
    ranked = sorted(scores, key=lambda s: s[1] if s[1] == s[1] else -1)
    chosen = ranked[-n:][::-1] + ranked[:n]
    remap = index_remap(labels)
    colours = [voc_palette()[3 * i:3 * i + 3] for i in range(256)]
    images, preds, truths, titles = [], [], [], []
    for name, miou in chosen:
        img = read_image(os.path.join(voc_dir, 'JPEGImages', f'{name}.jpg'))
        pred = predict_mask(net, img, window, stride, ctx)
        images.append(img)
        preds.append(label2image(pred, colours))
        truths.append(label2image(read_label(voc_dir, name, remap),
                                  colours))
        titles.append(f'{name} mIoU {miou:.2f}')
    viz.save_prediction_grid(images, preds, truths,
                             f'{stem}_best_worst.png',
                             titles=titles + [''] * (2 * len(titles)))
