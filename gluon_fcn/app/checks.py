"""Checks of a VOC-layout dataset, run once before any training.

Every fault a folder can have is reported as one `FCNError` naming the
file or image id, before the first batch: a split file that is missing or
empty, an id without its image or label, an image or label that does not
decode (corrupt or truncated), a label whose size differs from its image's,
label values that are not classes, and no image as large as the crop.
"""
import contextlib
import os

import numpy as onp
from PIL import Image, ImageFile
from tqdm import tqdm

from ..core.dataset import (example_paths, no_image_fits, other_size,
                            read_image)
from ..core.dataset import read_split
from ..core.files import check_readable
from ..core.labels import IGNORE_LABEL, voc_palette
from ..errors import FCNError


def decode_image(path, what='image'):
    """Open and decode `path` with PIL; return (image, (height, width)).

    JPEGs are decoded at 1/8 scale (PIL's draft mode), which still reads
    every byte, so a truncated file is found at a fraction of the cost.
    """
    check_readable(path, f'{what} file')
    try:
        with truncated_images_fail():
            img = Image.open(path)
            size = img.size
            if img.format == 'JPEG':
                img.draft('RGB', (1, 1))
            img.load()
    except Exception as e:  # PIL raises many types for broken files
        raise FCNError(f'{path}: cannot decode {what} (corrupt or '
                       'truncated?)') from e
    return img, size[::-1]


@contextlib.contextmanager
def truncated_images_fail():
    """PIL's default, whatever was imported: gluoncv.data sets PIL's
    global LOAD_TRUNCATED_IMAGES, which lets truncated files load."""
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def read_checked_image(path):
    """`read_image` of a file that PIL decodes whole (OpenCV would fill
    the missing part of a truncated JPEG with grey)."""
    decode_image(path, 'image')
    return read_image(path)


def allowed_labels(num_classes, labels='d2l', index_labels=False):
    """The label values that are classes: 0..num_classes-1 and the void
    255; None (any) for d2l's colour maps, where others are background."""
    if labels == 'd2l' and not index_labels:
        return None
    return set(range(num_classes)) | {IGNORE_LABEL}


def label_values(img):
    """The class indices in a label image: palette or single-channel
    values, else colours looked up in the VOC palette ('colour r,g,b'
    where a colour has no entry)."""
    if img.mode in ('P', 'L'):
        counts = onp.bincount(onp.asarray(img).ravel(), minlength=256)
        return onp.flatnonzero(counts).tolist()
    rgb = onp.asarray(img.convert('RGB')).astype(onp.int64)
    codes = onp.unique((rgb[..., 0] * 256 + rgb[..., 1]) * 256
                       + rgb[..., 2]).tolist()
    known = palette_codes()
    return ([known[c] for c in codes if c in known] +
            [f'colour {c >> 16},{c >> 8 & 255},{c & 255}'
             for c in codes if c not in known])


def palette_codes():
    palette = voc_palette()
    return {(palette[3 * i] * 256 + palette[3 * i + 1]) * 256
            + palette[3 * i + 2]: i for i in range(256)}


def check_example(voc_dir, split, name, allowed):
    """Check one id of a split; return its image's (height, width)."""
    image_path, label_path = example_paths(voc_dir, name)
    for path in (image_path, label_path):
        if not os.path.isfile(path):
            raise FCNError(f'{path}: no such file, but the {split} split '
                           f'lists {name} (add the file, or remove the '
                           f'line from {split}.txt)')
    _, size = decode_image(image_path, 'image')
    label, label_size = decode_image(label_path, 'label')
    if label_size != size:
        raise FCNError(other_size(label_path, label_size, size))
    if allowed is not None:
        bad = [v for v in label_values(label) if v not in allowed]
        if bad:
            raise FCNError(f'{label_path}: label values {bad} are not '
                           f'classes (0..{len(allowed) - 2}, or 255 for '
                           'void): list every class in the data\'s '
                           'classes.txt, or mark those pixels 255')
    return size


def check_split(voc_dir, split, crop_size=None, allowed=None,
                progress=True):
    """Check every example of a split, and with a `crop_size` that one
    image is as large; return their (height, width)s."""
    names = read_split(voc_dir, split)
    if not names:
        raise FCNError(no_image_fits(voc_dir, split, crop_size, []))
    sizes = [check_example(voc_dir, split, name, allowed) for name in tqdm(
        names, desc=f'checking {split}', disable=not progress, delay=2,
        leave=False)]
    if crop_size is None:
        return sizes
    h, w = crop_size
    if not any(ih >= h and iw >= w for ih, iw in sizes):
        raise FCNError(no_image_fits(voc_dir, split, crop_size, sizes))
    return sizes


def check_evaluated(voc_dir, split, num_classes, labels, index_labels,
                    crop_size=None, progress=True):
    """Check the `split` that `evaluate` scores (with `crop_size`, the
    chapter's random crops, that one image is as large) before any image
    is predicted; raise `FCNError` on a fault."""
    check_split(voc_dir, split, crop_size,
                allowed_labels(num_classes, labels, index_labels), progress)


def check_dataset(voc_dir, crop_size, num_classes, labels='d2l',
                  index_labels=False, progress=True):
    """Check the train and val splits of `voc_dir` for training with
    crops of `crop_size` (height, width); raise `FCNError` on a fault."""
    allowed = allowed_labels(num_classes, labels, index_labels)
    for split in ('train', 'val'):
        check_split(voc_dir, split, crop_size, allowed, progress)
