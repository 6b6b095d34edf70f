"""The chapter's own code in :numref:`sec_fcn`: the bilinear kernel that
initialises the transposed convolution, prediction and the colour map,
and d2l's `show_images`.
"""
import numpy as onp
from mxnet import np

from .data import VOC_COLORMAP, RGB_MEAN, RGB_STD


def bilinear_kernel(in_channels, out_channels, kernel_size):
    """Weights of a transposed convolution doing bilinear upsampling: an
    (in_channels, out_channels, k, k) array with the bilinear filter on
    the diagonal channel pairs and zeros elsewhere.

    Defined in :numref:`sec_fcn`"""
    factor = (kernel_size + 1) // 2
    if kernel_size % 2 == 1:
        center = factor - 1
    else:
        center = factor - 0.5
    og = (onp.arange(kernel_size).reshape(-1, 1),
          onp.arange(kernel_size).reshape(1, -1))
    filt = (1 - onp.abs(og[0] - center) / factor) * \
           (1 - onp.abs(og[1] - center) / factor)
    weight = onp.zeros((in_channels, out_channels, kernel_size, kernel_size),
                       dtype='float32')
    weight[range(in_channels), range(out_channels), :, :] = filt
    return np.array(weight)


def normalize_image(img):
    """(H, W, 3) uint8 -> float32 normalised with the ImageNet statistics,
    as `VOCSegDataset.normalize_image` does."""
    return (img.astype('float32') / 255 - np.array(RGB_MEAN, ctx=img.ctx)) \
        / np.array(RGB_STD, ctx=img.ctx)


def predict(net, img, ctx=None):
    """Class indices (H, W) of an (H, W, 3) uint8 image; H and W should be
    multiples of 32, as in the chapter. The book's `predict(img)` reads
    `net` and `devices` from the notebook; here they are arguments.

    Defined in :numref:`sec_fcn`"""
    ctx = ctx or img.ctx
    X = normalize_image(img)
    X = np.expand_dims(X.transpose(2, 0, 1), axis=0)  # (1, 3, H, W)
    pred = net(X.as_in_ctx(ctx)).argmax(axis=1)  # (1, H, W)
    return pred.reshape(pred.shape[1], pred.shape[2])


def label2image(pred, colormap=VOC_COLORMAP):
    """Colour image (H, W, 3) uint8 of class indices (H, W).

    Defined in :numref:`sec_fcn`"""
    colormap = np.array(colormap, ctx=pred.ctx, dtype='uint8')
    X = pred.astype('int32')
    return colormap[X, :]


def show_images(imgs, num_rows, num_cols, titles=None, scale=1.5):
    """Plot a list of images; returns the axes. pyplot is imported here,
    not with the package, so importing leaves the backend alone.

    Defined in :numref:`sec_utils`"""
    from matplotlib import pyplot as plt
    figsize = (num_cols * scale, num_rows * scale)
    _, axes = plt.subplots(num_rows, num_cols, figsize=figsize)
    axes = onp.array(axes).flatten()
    for i, (ax, img) in enumerate(zip(axes, imgs)):
        ax.imshow(img.asnumpy() if hasattr(img, 'asnumpy') else img)
        ax.axes.get_xaxis().set_visible(False)
        ax.axes.get_yaxis().set_visible(False)
        if titles:
            ax.set_title(titles[i])
    return axes
