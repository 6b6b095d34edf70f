"""`predict` and `evaluate` with a run folder, a pretrained zoo model or
an exported ONNX file: masks, overlays, figures.
"""
import dataclasses
import os
import sys

import numpy as onp
from mxnet import gluon

from .. import fast
from ..core.arrays import zeros
from ..core.dataset import SegDataset
from ..core.evaluate import evaluate_images
from ..core.files import check_readable, save_json
from ..core.labels import Legend, resolve_classes, save_label_png
from ..core.predict import predict_sliding
from ..core.training import evaluate_crops, seed_everything
from ..core.zoo import load_pretrained
from ..errors import FCNError
from ..fast.cpu import cpu_path
from ..fast.portable import OnnxNet
from ..fast.native import cpu_model
from . import figures
from .checks import check_evaluated, read_checked_image
from .choices import choice_path
from .config import TrainConfig
from .devices import parse_devices
from .fit import data_folder
from .loading import load_run
from .trained_on import synthetic_note


def open_net(run=None, model=None, onnx=None, model_root=None,
             params=None, ctx=None, window=None, precision='fp32'):
    """The net of `--run`, `--model` or `--onnx`, made fast for forward
    passes, its `Legend`, and its window: `window`, else the run's crop,
    the zoo's crop size or the ONNX file's input size."""
    if precision != 'fp32' and not run:
        raise FCNError(f'--precision {precision}: goes with --run (it is '
                       "calibrated on the run's images)")
    if run:
        net, config = load_noted_run(run, ctx, precision)
        return net, Legend(config.classes), window or config.crop
    if model:
        net = load_pretrained(model, model_root, params, ctx)
        window = window or net.window
        net = fast.optimize_for_inference(
            net, zeros((1, 3) + window, ctx=ctx), quadrants=False)
        return net, net.legend, window
    net = OnnxNet(onnx)
    if window and not net.dynamic and window != net.window:
        raise FCNError(f'--window {window[0]},{window[1]}: {onnx} takes '
                       f'{net.window[0]}x{net.window[1]} inputs only '
                       '(export with --dynamic for any size)')
    return net, net.legend, window or net.window


def load_noted_run(run_dir, ctx, precision='fp32'):
    """`load_run`, and the note of a run trained on synthetic data
    (`synthetic_note`), once, on stderr."""
    net, config = load_run(run_dir, ctx, precision=precision)
    note = synthetic_note(run_dir)
    if note:
        print(f'gluon-fcn: note: {note}', file=sys.stderr)
    return net, config


# the images `predict` takes from a folder, by suffix
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp', '.tif',
                  '.tiff', '.ppm', '.pgm')


def image_files(paths):
    """(path, None) for each file of `paths`, a folder's image files (by
    suffix) sorted by name in its place; (folder, FCNError) for a folder
    without images."""
    for path in paths:
        if not os.path.isdir(path):
            yield path, None
            continue
        try:
            check_readable(path, 'folder')
        except FCNError as e:
            yield path, e
            continue
        names = sorted(name for name in os.listdir(path)
                       if name.lower().endswith(IMAGE_SUFFIXES) and
                       os.path.isfile(os.path.join(path, name)))
        if not names:
            yield path, FCNError(f'{path}: a folder with no image files '
                                 f'({", ".join(IMAGE_SUFFIXES)})')
        for name in names:
            yield os.path.join(path, name), None


def precision_line(net, ctx=None):
    """What `net` computes in and where: 'int8 on AVX-512 VNNI, AMD
    EPYC', 'fp32 on onnxruntime, AMD EPYC', 'fp32 on gpu(0)'."""
    if isinstance(net, OnnxNet):
        return f'fp32 on onnxruntime, {cpu_model()}'
    precision = getattr(net, 'precision', 'fp32')
    return f'{precision} on {cpu_path(precision, ctx)}'


def print_choice(net, run_dir):
    """With `--precision auto`: what it measured and chose, one line."""
    choice = getattr(net, 'choice', None)
    if choice is not None:
        print(f'{choice.describe()}; kept in {choice_path(run_dir)}')


def predict_files(net, legend, paths, out_dir, window, stride=None,
                  ctx=None, details=False):
    """Segment image files (a folder: its image files, by name) whole, by
    sliding windows: `out_dir/<stem>.png` (palette PNG of class indices,
    the image's size) and `<stem>_overlay.png`, in the colours of
    `legend`; print the classes found, one line an image (with
    `details`, for a zoo model as the PyTorch blog's material prints it:
    the output's shape and the classes' indices too). An unreadable
    (or truncated) file, or a folder without images, is reported and
    skipped; returns how many failed.
    """
    if any(os.path.isdir(p) and os.path.realpath(p) ==
           os.path.realpath(out_dir) for p in paths):
        raise FCNError(f'--out {out_dir}: the folder of the images; the '
                       'masks, PNGs named after them, would mix with them or '
                       'replace them: give another folder')
    failed = 0
    colours = legend.colours()
    # ADE20K's names hold commas ('building, edifice')
    sep = '; ' if any(',' in name for name in legend.classes) else ', '
    for path, error in image_files(paths):
        if error is None:
            try:
                img = read_checked_image(path)
            except FCNError as e:
                error = e
        if error is not None:
            print(f'gluon-fcn: error: {error}', file=sys.stderr)
            failed += 1
            continue
        logits = predict_sliding(net, img, window, stride, ctx)  # (C, H, W)
        mask = logits.argmax(axis=0).astype('int32').asnumpy()
        stem = os.path.join(out_dir, os.path.splitext(
            os.path.basename(path))[0])
        save_label_png(mask, stem + '.png', legend.full_palette())
        found = onp.unique(mask).tolist()
        names = sep.join(legend.classes[i] for i in found)
        figures.save_overlay(img, mask, stem + '_overlay.png',
                             legend.classes,
                             f'{os.path.basename(path)}: predicted classes',
                             colours=colours, background=legend.background)
        if details:
            print(f'{path}: output {(1,) + tuple(logits.shape)}, classes '
                  f'[{" ".join(map(str, found))}]: {names}')
        else:
            print(f'{path}: {names}')
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
    net, config = load_noted_run(run_dir, ctx, precision)
    precision = getattr(net, 'precision', 'fp32')  # the one that runs
    config = dataclasses.replace(config, data=data, data_dir=data_dir,
                                 labels=labels)
    voc_dir = data_folder(config)
    index_labels = resolve_classes(config.classes, voc_dir)[1]
    check_evaluated(voc_dir, split, len(config.classes), labels,
                    index_labels, config.crop if crops else None)
    print_choice(net, run_dir)
    if crops:
        return crop_accuracy(net, config, voc_dir, split, batch_size, seed,
                             json_path, index_labels)
    window = window or config.crop
    reference = load_run(run_dir, ctx)[0] if precision != 'fp32' else None
    return score_images(net, Legend(config.classes), voc_dir, split,
                        labels, json_path, window, stride, ctx, precision,
                        reference)


def evaluate_model(model, model_root, params, data, data_dir, split='val',
                   labels='voc', json_path=None, window=None, stride=None,
                   device='cpu:0'):
    """Whole-image figures of a pretrained zoo model on a split, as
    `evaluate_run` gives them for a run."""
    ctx = parse_devices(device, '--device')[0]
    voc_dir = data_folder(dataclasses.replace(TrainConfig(), data=data,
                                              data_dir=data_dir))
    classes, index_labels = resolve_classes(None, voc_dir)
    net, legend, window = open_net(model=model, model_root=model_root,
                                   params=params, ctx=ctx, window=window)
    if len(classes) != len(legend.classes):
        raise FCNError(f'--model {model} predicts {len(legend.classes)} '
                       f'classes, but --data {voc_dir} has {len(classes)}')
    check_evaluated(voc_dir, split, len(classes), labels, index_labels)
    return score_images(net, legend, voc_dir, split, labels, json_path,
                        window, stride, ctx)


def score_images(net, legend, voc_dir, split, labels, json_path, window,
                 stride, ctx, precision='fp32', reference=None):
    """Predict a split whole, print the figures (with `reference`, a
    float32 net: how `precision`'s predictions differ from its), and with
    `json_path` write them with their figures
    (`figures.save_eval_report`)."""
    metrics, scores = evaluate_images(net, voc_dir, split, legend.classes,
                                      labels, window, stride, ctx,
                                      reference=reference,
                                      background=legend.background)
    metrics['precision'] = precision
    print(f'{split}: pixel acc {metrics["pixel_acc"]:.3f}, mean acc '
          f'{metrics["mean_acc"]:.3f}, mean IoU {metrics["mean_iou"]:.3f}, '
          f'fw IoU {metrics["fw_iou"]:.3f} on {metrics["images"]} whole '
          f'images ({labels} labels, {precision_line(net, ctx)})')
    if reference is not None:
        print(format_against_fp32(metrics['against_reference'], precision))
    if json_path:
        figures.save_eval_report(net, voc_dir, metrics, scores, json_path,
                                 legend.classes, labels, window, stride,
                                 ctx, colours=legend.colours())
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
    acc = evaluate_crops(net, data_iter)[0]
    result = {'accuracy': acc, 'split': split, 'images': len(dataset),
                'crop': list(config.crop), 'data': voc_dir, 'seed': seed,
                'labels': config.labels}
    print(f'{split} accuracy {acc:.3f} on {len(dataset)} images '
          f'({config.crop[0]}x{config.crop[1]} random crops, '
          f'{config.labels} labels, {precision_line(net)})')
    if json_path:
        save_json(result, json_path)
    return result
