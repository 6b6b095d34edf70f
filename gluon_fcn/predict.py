"""Prediction with a trained FCN (d2l, sec_fcn) and for images of any size.
"""
import os
import sys

import mxnet as mx
from mxnet import np

from . import viz
from .checks import read_checked_image
from .data import VOC_COLORMAP, normalize_image, save_label_png
from .errors import FCNError
from .model import STRIDE


def predict(net, img, ctx=None):
    """Class indices (H, W) of an (H, W, 3) uint8 image (d2l's `predict`).

    As in the chapter, H and W should be multiples of 32; `predict_image`
    takes any size.
    """
    ctx = ctx or mx.cpu()
    X = normalize_image(img)
    X = np.expand_dims(X.transpose(2, 0, 1), axis=0)  # (1, 3, H, W)
    pred = net(X.as_in_ctx(ctx)).argmax(axis=1)  # (1, H, W)
    return pred.reshape(pred.shape[1], pred.shape[2])


def pad_to_multiple(X, multiple=STRIDE):
    """Zero-pad (B, C, H, W) at the bottom and right to multiples.

    On normalised input zero is the mean colour.
    """
    h, w = X.shape[-2:]
    return pad_to(X, h + -h % multiple, w + -w % multiple)


def predict_logits(net, img, ctx=None):
    """Logits (C, H, W) for an (H, W, 3) uint8 image of any size."""
    ctx = ctx or mx.cpu()
    h, w = img.shape[:2]
    X = normalize_image(img.as_in_ctx(ctx))
    X = np.expand_dims(X.transpose(2, 0, 1), axis=0)  # (1, 3, H, W)
    return net(pad_to_multiple(X))[0, :, :h, :w]  # (C, H, W)


def window_starts(length, window, stride):
    """Start offsets of windows covering [0, length): every `stride`, the
    last one shifted back so that it ends at `length` (mmsegmentation's
    slide inference). `length` must be at least `window`."""
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def predict_sliding(net, img, window=(320, 480), stride=None, ctx=None):
    """Logits (C, H, W) of a whole image of any size by sliding windows.

    Windows of `window` (height, width), multiples of 32, every `stride`
    (default two thirds of the window) cover the image; logits are
    averaged where windows overlap. An image smaller than a window is
    padded with the mean colour. For an image of exactly one window this
    is a plain forward pass.
    """
    ctx = ctx or mx.cpu()
    (wh, ww), (h, w) = window, img.shape[:2]
    sh, sw = stride or (max(wh * 2 // 3, 1), max(ww * 2 // 3, 1))
    X = normalize_image(img.as_in_ctx(ctx))
    X = np.expand_dims(X.transpose(2, 0, 1), axis=0)  # (1, 3, H, W)
    X = pad_to(X, max(h, wh), max(w, ww))
    ph, pw = X.shape[-2:]
    logits, count = None, np.zeros((ph, pw), ctx=ctx)
    for y0 in window_starts(ph, wh, sh):
        for x0 in window_starts(pw, ww, sw):
            out = net(X[:, :, y0:y0 + wh, x0:x0 + ww])[0]  # (C, wh, ww)
            if logits is None:
                logits = np.zeros((out.shape[0], ph, pw), ctx=ctx)
            logits[:, y0:y0 + wh, x0:x0 + ww] += out
            count[y0:y0 + wh, x0:x0 + ww] += 1
    assert float(count.min()) >= 1, 'a pixel was not covered'
    return (logits / count)[:, :h, :w]


def predict_mask(net, img, window=(320, 480), stride=None, ctx=None):
    """Class indices (H, W) int32 of a whole image by sliding windows."""
    return predict_sliding(net, img, window, stride, ctx).argmax(
        axis=0).astype('int32')


def pad_to(X, height, width):
    """Zero-pad (B, C, H, W) at the bottom and right to (height, width)."""
    h, w = X.shape[-2:]
    if (h, w) == (height, width):
        return X
    out = np.zeros(X.shape[:-2] + (height, width), dtype=X.dtype,
                   ctx=X.ctx)
    out[..., :h, :w] = X
    return out


def predict_image(net, img, ctx=None):
    """Class indices (H, W) of an image of any size: padded to multiples
    of 32 with the mean colour, predicted, and cropped back."""
    return predict_logits(net, img, ctx).argmax(axis=0).astype('int32')


def label2image(pred, colormap=VOC_COLORMAP):
    """Colour image (H, W, 3) uint8 of class indices (d2l)."""
    colormap = np.array(colormap, ctx=pred.ctx, dtype='uint8')
    X = pred.astype('int32')
    return colormap[X, :]


def predict_files(net, config, paths, out_dir, ctx=None, window=None,
                  stride=None):
    """Segment image files whole, by sliding windows (default: the run's
    crop): `out_dir/<stem>.png` (palette PNG of class indices, the image's
    size) and `<stem>_overlay.png`; print the classes found. An unreadable
    (or truncated) file is reported and skipped; returns how many failed.
    """
    failed = 0
    for path in paths:
        try:
            img = read_checked_image(path)
        except FCNError as e:
            print(f'gluon-fcn: error: {e}', file=sys.stderr)
            failed += 1
            continue
        pred = predict_mask(net, img, window or config.crop, stride, ctx)
        stem = os.path.join(out_dir, os.path.splitext(
            os.path.basename(path))[0])
        mask = pred.asnumpy()
        save_label_png(mask, stem + '.png')
        viz.save_overlay(img, label2image(pred), stem + '_overlay.png',
                         where=mask != 0)
        found = [config.classes[i] for i in sorted(set(mask.ravel()))]
        print(f'{path}: {", ".join(found)}')
    return failed
