"""Prediction of whole images of any size: padding to multiples of 32 and
sliding windows (mmsegmentation's `slide_inference`), in the flavour of
the MXNet mode in force (images of either flavour are accepted).
"""
import mxnet as mx
import numpy as onp

from ..d2l import RGB_MEAN, RGB_STD
from .arrays import to_mode, zeros
from .model import STRIDE


def image_batch(img, ctx=None):
    """(H, W, 3) uint8 image -> normalised (1, 3, H, W) float32 batch, in
    the current mode's flavour (d2l's `normalize_image`, then NCHW)."""
    img = to_mode(img).as_in_context(ctx or mx.cpu())
    mean = to_mode(mx.np.array(RGB_MEAN)).as_in_context(img.context)
    std = to_mode(mx.np.array(RGB_STD)).as_in_context(img.context)
    X = (img.astype('float32') / 255 - mean) / std
    X = X.transpose((2, 0, 1))
    return X.reshape((1,) + X.shape)  # (1, 3, H, W)


def pad_to(X, height, width):
    """Zero-pad (B, C, H, W) at the bottom and right to (height, width).

    On normalised input zero is the mean colour."""
    h, w = X.shape[-2:]
    if (h, w) == (height, width):
        return X
    out = zeros(X.shape[:-2] + (height, width), ctx=X.context,
                dtype=X.dtype)
    out[:, :, :h, :w] = X
    return out


def pad_to_multiple(X, multiple=STRIDE):
    """Zero-pad (B, C, H, W) at the bottom and right to multiples."""
    h, w = X.shape[-2:]
    return pad_to(X, h + -h % multiple, w + -w % multiple)


def predict_logits(net, img, ctx=None):
    """Logits (C, H, W) for an (H, W, 3) uint8 image of any size: padded
    to multiples of 32, predicted, cropped back."""
    h, w = img.shape[:2]
    return net(pad_to_multiple(image_batch(img, ctx)))[0, :, :h, :w]


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
    (wh, ww), (h, w) = window, img.shape[:2]
    sh, sw = stride or (max(wh * 2 // 3, 1), max(ww * 2 // 3, 1))
    X = image_batch(img, ctx)
    X = pad_to(X, max(h, wh), max(w, ww))
    ph, pw = X.shape[-2:]
    logits, count = None, onp.zeros((ph, pw), 'float32')
    for y0 in window_starts(ph, wh, sh):
        for x0 in window_starts(pw, ww, sw):
            out = net(X[:, :, y0:y0 + wh, x0:x0 + ww])[0]  # (C, wh, ww)
            if logits is None:
                logits = zeros((out.shape[0], ph, pw), ctx=X.context)
            logits[:, y0:y0 + wh, x0:x0 + ww] += out
            count[y0:y0 + wh, x0:x0 + ww] += 1
    assert count.min() >= 1, 'a pixel was not covered'
    # legacy NDArrays do not broadcast: divide by the count of each logit
    count = onp.broadcast_to(count, logits.shape)
    count = to_mode(mx.np.array(count)).as_in_context(X.context)
    return (logits / count)[:, :h, :w]


def predict_mask(net, img, window=(320, 480), stride=None, ctx=None):
    """Class indices (H, W) int32 of a whole image by sliding windows."""
    return predict_sliding(net, img, window, stride, ctx).argmax(
        axis=0).astype('int32')


def predict_image(net, img, ctx=None):
    """Class indices (H, W) int32 of an image of any size (one pass)."""
    return predict_logits(net, img, ctx).argmax(axis=0).astype('int32')


def colorize(pred, colormap):
    """Colour image (H, W, 3) uint8 NumPy of class indices (H, W) under
    `colormap` ([(r, g, b)] by class): d2l's `label2image` for any
    palette and either flavour."""
    pred = pred.asnumpy() if hasattr(pred, 'asnumpy') else onp.asarray(pred)
    return onp.asarray(colormap, dtype='uint8')[pred.astype('int32')]

