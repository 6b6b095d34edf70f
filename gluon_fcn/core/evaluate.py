"""Whole-image evaluation of a trained FCN over a VOC-layout split.

Each image is predicted whole by sliding windows (`predict_mask`), its
label read under a convention ('d2l': the border is background; 'voc': the
border is ignored), and one confusion matrix is accumulated over the split,
from which `gluon_fcn.core.metrics` derives the FCN paper's figures;
optionally against a reference net's predictions (bf16 or int8 against
float32).
"""
from tqdm import tqdm

from .dataset import example_paths, read_image, read_split
from .labels import index_remap, read_label_indices
from .metrics import ConfusionMatrix, confusion_matrix, object_iou
from .predict import predict_mask


def read_label(voc_dir, name, labels='voc'):
    """(H, W) int32 NumPy class indices of an image's label PNG under a
    label convention (`gluon_fcn.core.labels`)."""
    indices = read_label_indices(example_paths(voc_dir, name)[1])
    return index_remap(labels)[indices].astype('int32')


def evaluate_images(net, voc_dir, split='val', classes=None, labels='voc',
                    window=(320, 480), stride=None, ctx=None,
                    progress=True, reference=None, background=0):
    """Whole-image figures over a split; also each image's (name, object
    IoU), `metrics.object_iou`: the mean IoU of its classes other than
    `background`, which ranks an empty prediction lowest.

    With a `reference` net (the float32 one, against a bf16 or int8
    `net`), the metrics also hold 'against_reference': the share of all
    pixels whose predicted class differs between the two, the
    reference's figures, and the differences (net - reference) of pixel
    accuracy and mean IoU.

    Returns (metrics dict, [(name, image object IoU), ...]).
    """
    num_classes = len(classes)
    total, ref_total = (ConfusionMatrix(num_classes) for _ in range(2))
    scores, changed, pixels = [], 0, 0
    for name in tqdm(read_split(voc_dir, split), desc=f'evaluate {split}',
                     disable=not progress, leave=False):
        img = read_image(example_paths(voc_dir, name)[0])
        label = read_label(voc_dir, name, labels)
        pred = predict_mask(net, img, window, stride, ctx).asnumpy()
        hist = confusion_matrix(pred, label, num_classes)
        total.mat += hist
        scores.append((name, object_iou(hist, background)))
        if reference is not None:
            ref = predict_mask(reference, img, window, stride, ctx).asnumpy()
            ref_total.update(ref, label)
            changed += int((ref != pred).sum())
            pixels += pred.size
    metrics = total.compute(list(classes))
    metrics.update(labels=labels, images=len(scores), split=split)
    if reference is not None:
        ref = ref_total.compute(list(classes))
        metrics['against_reference'] = {
            'changed_pixels': changed / max(pixels, 1),
            'pixel_acc_delta': metrics['pixel_acc'] - ref['pixel_acc'],
            'mean_iou_delta': metrics['mean_iou'] - ref['mean_iou'],
            'reference': ref}
    return metrics, scores
