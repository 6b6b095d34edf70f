"""The v1 edition of d2l's FCN chapter: ``from gluon_fcn import v1 as d2l``.

What d2l-zh v1 section 9.10 "Fully Convolutional Networks (FCN)" (d2l-en
v1 "Fully Convolutional Networks (FCN)") calls as ``d2l.NAME`` after
``import d2lzh as d2l``, under d2lzh 1.0.0's names, signatures and
printed lines, plus the chapter's own `bilinear_kernel`, `predict` and
`label2image`. Everything takes and returns legacy ``mx.nd`` NDArrays:
run it with MXNet's NumPy mode off (``npx.reset_np()``).

Importing this package changes no global state: no MXNet mode, no
arrays, and pyplot (``d2l.plt``) is imported on first use.
"""
from .data import (VOC_CLASSES, VOC_COLORMAP, VOCSegDataset,
                   download_voc_pascal, read_voc_images, voc_label_indices,
                   voc_rand_crop)
from .display import set_figsize, show_images
from .fcn import bilinear_kernel, bind_predict, corr2d, label2image, predict
from .train import (_get_batch, evaluate_accuracy, train, try_all_gpus,
                    try_gpu)

__all__ = ['VOC_CLASSES', 'VOC_COLORMAP', 'VOCSegDataset', 'bilinear_kernel',
           'bind_predict', 'corr2d', 'download_voc_pascal',
           'evaluate_accuracy', 'label2image', 'plt', 'predict',
           'read_voc_images', 'set_figsize', 'show_images', 'train',
           'try_all_gpus', 'try_gpu', 'voc_label_indices', 'voc_rand_crop']


def __getattr__(name):
    """``d2l.plt``: pyplot, imported on first use (see `display`)."""
    if name == 'plt':
        from .display import plt
        return plt
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
