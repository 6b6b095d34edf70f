"""Labels in one place: the VOC palette, the two label conventions, class
lists and label files.

Conventions for VOC's void border colour (224, 224, 192), index 255 in
its palette PNGs:

- 'd2l': the border is background (class 0), as the textbook has it (its
  colour map sends every unknown colour to 0). The default.
- 'voc': the border is 255 and ignored by the loss and the metrics, as the
  FCN paper, gluoncv and torchvision have it.
"""
import dataclasses
import functools
import os

import numpy as onp
from PIL import Image

from ..d2l.data import VOC_CLASSES, voc_colormap2label
from ..errors import FCNError, read_error
from .files import atomic_path, check_readable

IGNORE_LABEL = 255  # VOC's void colour (224, 224, 192) in palette PNGs
VOC_BORDER = (224, 224, 192)
LABEL_CONVENTIONS = ('d2l', 'voc')


@functools.lru_cache(maxsize=1)
def _palette():
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return tuple(palette)


def voc_palette():
    """The 256-entry VOC palette as a flat list of 768 ints.

    Entries 0..20 are `VOC_COLORMAP`; entry 255 is the void/border colour
    (224, 224, 192). It is the palette of VOC's SegmentationClass PNGs.
    """
    # gluoncv's `get_color_pallete(..., 'pascal_voc')` builds the same
    # list (a test checks), but importing gluoncv is slow (README, results
    # log, "Measured while writing the code") and,
    # through gluoncv.data, sets PIL's LOAD_TRUNCATED_IMAGES for the whole
    # process, so that cut JPEGs decode silently: every command reads
    # labels, so this module keeps its own. The zoo's palettes (ADE20K's)
    # come from gluoncv (`gluon_fcn.core.zoo`).
    return list(_palette())


def class_colours(num_classes=256, palette=None):
    """[(r, g, b)] of the first `num_classes` entries of a flat palette
    (VOC's by default)."""
    p = palette or _palette()
    return [tuple(p[3 * i:3 * i + 3]) for i in range(num_classes)]


@dataclasses.dataclass(frozen=True)
class Legend:
    """A model's class names and how its masks are drawn.

    `palette` is a flat list of 768 ints, entry k the colour of class k
    (VOC's by default); `background` is the class that overlays leave
    untinted, None where there is none (ADE20K's 150 classes).
    """
    classes: tuple
    palette: tuple = None
    background: int = 0

    def colours(self):
        """[(r, g, b)] of the 256 palette entries: class k's at k (and
        VOC's void colour at 255 in VOC's palette)."""
        return class_colours(256, self.palette)

    def full_palette(self):
        """The 768-int palette for mask PNGs."""
        return list(self.palette or _palette())


def check_convention(labels):
    if labels not in LABEL_CONVENTIONS:
        raise FCNError(f'labels {labels!r}: choose d2l or voc')


def colormap2label_for(labels='d2l'):
    """d2l's `voc_colormap2label()` under a label convention (module
    docstring)."""
    check_convention(labels)
    colormap2label = voc_colormap2label()
    if labels == 'voc':
        r, g, b = VOC_BORDER
        colormap2label[(r * 256 + g) * 256 + b] = IGNORE_LABEL
    return colormap2label


def index_remap(convention='d2l'):
    """Index -> class under a convention (NumPy, float32): 'd2l' sends
    the void 255 to 0."""
    check_convention(convention)
    remap = onp.arange(256, dtype='float32')
    if convention == 'd2l':
        remap[IGNORE_LABEL] = 0
    return remap


@functools.lru_cache(maxsize=1)
def palette2label():
    """RGB code -> index for all 256 VOC palette colours (NumPy, uint8)."""
    table = onp.zeros(256 ** 3, onp.uint8)
    palette = _palette()
    for i in range(256):
        r, g, b = palette[3 * i:3 * i + 3]
        table[(r * 256 + g) * 256 + b] = i
    return table


def read_label_indices(path):
    """(H, W) uint8 NumPy class indices of a label PNG of any dataset.

    Palette ('P') and single-channel ('L') PNGs hold the indices; colour
    PNGs are mapped back through the VOC palette (unknown colours: 0).
    """
    check_readable(path, 'label file')
    try:
        img = Image.open(path)
        img.load()
    except Exception as e:  # PIL raises many types for broken files
        raise FCNError(f'{path}: cannot decode label image') from e
    if img.mode in ('P', 'L'):
        return onp.asarray(img, dtype='uint8')
    rgb = onp.asarray(img.convert('RGB')).astype(onp.int64)
    idx = (rgb[:, :, 0] * 256 + rgb[:, :, 1]) * 256 + rgb[:, :, 2]
    return palette2label()[idx]


def save_label_png(indices, path, palette=None):
    """Write (H, W) class indices as a palette-mode PNG, atomically.

    The palette defaults to VOC's, so the file reads like a VOC label.
    """
    indices = onp.asarray(indices.asnumpy() if hasattr(indices, 'asnumpy')
                          else indices)
    img = Image.fromarray(indices.astype(onp.uint8), mode='P')
    img.putpalette(palette or voc_palette())
    with atomic_path(path) as tmp:
        img.save(tmp, format='PNG')


def read_classes(voc_dir):
    """The class names in `classes.txt` beside the splits, one a line, or
    None where there is none (a VOC folder)."""
    path = os.path.join(voc_dir, 'classes.txt')
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            classes = [line.strip() for line in f if line.strip()]
    except OSError as e:
        raise read_error(path, e) from e
    if len(classes) < 2:
        raise FCNError(f'{path}: needs at least two classes, one a line')
    return classes


def resolve_classes(classes, voc_dir):
    """The class names: `classes`, or the data's classes.txt, or VOC's.
    Labels are read as indices unless the data is plain VOC (d2l's colour
    path). Returns (classes, index_labels)."""
    own = read_classes(voc_dir)
    classes = tuple(classes or own or VOC_CLASSES)
    return classes, classes != tuple(VOC_CLASSES) or own is not None
