"""`predict` and `evaluate` over run folders: masks, overlays, figures.
"""
import dataclasses
import os
import sys

from mxnet import gluon

from ..core.dataset import SegDataset
from ..core.evaluate import evaluate_images
from ..core.files import save_json
from ..core.labels import class_colours, resolve_classes, save_label_png
from ..core.predict import colorize, predict_mask
from ..core.training import evaluate, seed_everything
from ..errors import FCNError
from . import figures
from .checks import read_checked_image
from .runs import data_folder, load_run, parse_devices


def predict_files(net, classes, paths, out_dir, window, stride=None,
                  ctx=None):
    """Segment image files whole, by sliding windows: `out_dir/<stem>.png`
    (palette PNG of class indices, the image's size) and
    `<stem>_overlay.png`; print the classes found. An unreadable (or
    truncated) file is reported and skipped; returns how many failed.
    """
    failed = 0
    colours = class_colours(len(classes))
    for path in paths:
        try:
            img = read_checked_image(path)
        except FCNError as e:
            print(f'gluon-fcn: error: {e}', file=sys.stderr)
            failed += 1
            continue
        mask = predict_mask(net, img, window, stride, ctx).asnumpy()
        stem = os.path.join(out_dir, os.path.splitext(
            os.path.basename(path))[0])
        save_label_png(mask, stem + '.png')
        figures.save_overlay(img, colorize(mask, colours),
                             stem + '_overlay.png', where=mask != 0)
        found = [classes[i] for i in sorted(set(mask.ravel()))]
        print(f'{path}: {", ".join(found)}')
    return failed


def evaluate_run(run_dir, data, data_dir, split='val', labels='voc',
                 json_path=None, window=None, stride=None, device='cpu:0',
                 crops=False, batch_size=None, seed=0, precision='fp32'):
    """Whole-image figures of a run on a split (with `json_path`: the JSON,
    a per-class IoU bar chart and a best/worst grid beside it); with
    `crops`, the chapter's test accuracy on seeded random crops instead.
    With `precision` 'bf16' or 'int8', the net runs in it and the whole-
    image figures are compared with float32's on the same images."""
    ctx = parse_devices(device, '--device')[0]
    net, config = load_run(run_dir, ctx, precision=precision)
    precision = getattr(net, 'precision', 'fp32')  # the one that runs
    config = dataclasses.replace(config, data=data, data_dir=data_dir,
                                 labels=labels)
    voc_dir = data_folder(config)
    index_labels = resolve_classes(config.classes, voc_dir)[1]
    if crops:
        return crop_accuracy(net, config, voc_dir, split, batch_size, seed,
                             json_path, index_labels)
    window = window or config.crop
    reference = load_run(run_dir, ctx)[0] if precision != 'fp32' else None
    metrics, scores = evaluate_images(net, voc_dir, split, config.classes,
                                      labels, window, stride, ctx,
                                      reference=reference)
    metrics['precision'] = precision
    print(f'{split}: pixel acc {metrics["pixel_acc"]:.3f}, mean acc '
          f'{metrics["mean_acc"]:.3f}, mean IoU {metrics["mean_iou"]:.3f}, '
          f'fw IoU {metrics["fw_iou"]:.3f} on {metrics["images"]} whole '
          f'images ({labels} labels, {precision})')
    if reference is not None:
        print(format_against_fp32(metrics['against_reference'], precision))
    if json_path:
        figures.save_eval_report(net, voc_dir, metrics, scores, json_path,
                                 config.classes, labels, window, stride,
                                 ctx)
    return metrics


def format_against_fp32(against, precision):
    """One line: how `precision`'s predictions differ from float32's."""
    return (f'{precision} against fp32: {against["changed_pixels"]:.3%} '
            f'of pixels change class; pixel acc '
            f'{against["pixel_acc_delta"]:+.4f}, mean IoU '
            f'{against["mean_iou_delta"]:+.4f}')


def crop_accuracy(net, config, voc_dir, split, batch_size, seed, json_path,
                  index_labels=False):
    """The chapter's test accuracy: seeded random crops of the run's size.
    """
    seed_everything(seed)
    dataset = SegDataset(split == 'train', config.crop, voc_dir,
                         config.labels, index_labels)
    data_iter = gluon.data.DataLoader(dataset, batch_size or
                                      config.batch_size)
    acc = evaluate(net, data_iter)[0]
    result = {'accuracy': acc, 'split': split, 'images': len(dataset),
                'crop': list(config.crop), 'data': voc_dir, 'seed': seed,
                'labels': config.labels}
    print(f'{split} accuracy {acc:.3f} on {len(dataset)} images '
          f'({config.crop[0]}x{config.crop[1]} random crops)')
    if json_path:
        save_json(result, json_path)
    return result
