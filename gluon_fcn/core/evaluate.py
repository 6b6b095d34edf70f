"""Whole-image evaluation of a trained FCN over a VOC-layout split.

Each image is predicted whole by sliding windows (`predict_mask`), its
label read under a convention ('d2l': the border is background; 'voc': the
border is ignored), and one confusion matrix is accumulated over the split,
from which `gluon_fcn.core.metrics` derives the FCN paper's figures.
"""
from tqdm import tqdm

from .dataset import example_paths, read_image, read_split
from .labels import index_remap, read_label_indices
from .metrics import ConfusionMatrix, confusion_matrix, segmentation_metrics
from .predict import predict_mask


def read_label(voc_dir, name, labels='voc'):
    """(H, W) int32 NumPy class indices of an image's label PNG under a
    label convention (`gluon_fcn.core.labels`)."""
    indices = read_label_indices(example_paths(voc_dir, name)[1])
    return index_remap(labels)[indices].astype('int32')


def evaluate_images(net, voc_dir, split='val', classes=None, labels='voc',
                    window=(320, 480), stride=None, ctx=None,
                    progress=True):
    """Whole-image figures over a split; also each image's (name, mIoU).

    Returns (metrics dict, [(name, image mean IoU), ...]).
    """
    num_classes = len(classes)
    total = ConfusionMatrix(num_classes)
    scores = []
    for name in tqdm(read_split(voc_dir, split), desc=f'evaluate {split}',
                     disable=not progress, leave=False):
        img = read_image(example_paths(voc_dir, name)[0])
        pred = predict_mask(net, img, window, stride, ctx)
        hist = confusion_matrix(pred, read_label(voc_dir, name, labels),
                                num_classes)
        total.mat += hist
        scores.append((name, segmentation_metrics(hist)['mean_iou']))
    metrics = total.compute(list(classes))
    metrics.update(labels=labels, images=len(scores), split=split)
    return metrics, scores
