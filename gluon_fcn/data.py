"""The Pascal VOC2012 semantic segmentation data, as in d2l.

Ports the functions of d2l's "Semantic Segmentation and the Dataset"
section (:numref:`sec_semantic_segmentation`) with their names and
signatures. They return `mxnet.numpy` arrays whether or not MXNet's NumPy
mode is on (d2l 1.0.3's own `VOCSegDataset` fails when it is off).
"""
import functools
import os
import random

import numpy as onp
from mxnet import gluon, image
from mxnet import np

from .download import (VOC_SHA1, VOC_SUBDIR, VOC_URL,  # noqa: F401
                       download_voc, file_sha1)
from .errors import FCNError
from .files import atomic_path


VOC_COLORMAP = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0],
                [0, 0, 128], [128, 0, 128], [0, 128, 128], [128, 128, 128],
                [64, 0, 0], [192, 0, 0], [64, 128, 0], [192, 128, 0],
                [64, 0, 128], [192, 0, 128], [64, 128, 128], [192, 128, 128],
                [0, 64, 0], [128, 64, 0], [0, 192, 0], [128, 192, 0],
                [0, 64, 128]]

VOC_CLASSES = ['background', 'aeroplane', 'bicycle', 'bird', 'boat',
               'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
               'diningtable', 'dog', 'horse', 'motorbike', 'person',
               'potted plant', 'sheep', 'sofa', 'train', 'tv/monitor']

# ImageNet statistics the pretrained backbones were trained with.
RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)

IGNORE_LABEL = 255  # VOC's void colour (224, 224, 192) in palette PNGs


def voc_palette():
    """The 256-entry VOC palette as a flat list of 768 ints.

    Entries 0..20 are `VOC_COLORMAP`; entry 255 is the void/border colour
    (224, 224, 192). This is the palette of VOC's SegmentationClass PNGs.
    """
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
    return palette


def save_label_png(indices, path, palette=None):
    """Write (H, W) class indices as a palette-mode PNG, atomically.

    The palette defaults to VOC's, so the file reads like a VOC label.
    """
    from PIL import Image
    indices = onp.asarray(indices)
    img = Image.fromarray(indices.astype(onp.uint8), mode='P')
    img.putpalette(palette or voc_palette())
    with atomic_path(path) as tmp:
        img.save(tmp, format='PNG')


def read_image(path):
    """Decode an image file to an RGB (H, W, 3) uint8 `mxnet.numpy` array.

    Uses MXNet's OpenCV decoder, as d2l does, so the pixels are d2l's; it
    reads grey, palette, RGBA (alpha dropped), CMYK and 16-bit images
    (scaled to 8 bits). What it cannot read (GIF, WebP) goes through PIL.
    """
    if not os.path.isfile(path):
        raise FCNError(f'{path}: no such image file')
    try:
        img = image.imread(path)
    except Exception:  # MXNetError from OpenCV: not a format it reads
        return np.array(pil_rgb(path), dtype='uint8')
    return img if isinstance(img, np.ndarray) else img.as_np_ndarray()


def pil_rgb(path):
    """(H, W, 3) uint8 NumPy RGB of an image file PIL reads, as OpenCV
    has it: 16-bit grey scaled to 8 bits, alpha dropped."""
    from PIL import Image
    try:
        img = Image.open(path)
        img.load()
    except Exception as e:  # PIL raises many types for broken files
        raise FCNError(f'{path}: cannot decode image') from e
    if img.mode.startswith('I'):  # 'I;16', 'I': 16-bit grey
        grey = onp.asarray(img).astype(onp.int64).clip(0, 65535) >> 8
        return onp.repeat(grey.astype(onp.uint8)[:, :, None], 3, axis=2)
    return onp.asarray(img.convert('RGB'))


def read_split(voc_dir, split):
    """The image ids listed in ImageSets/Segmentation/{split}.txt."""
    txt_fname = os.path.join(voc_dir, 'ImageSets', 'Segmentation',
                             f'{split}.txt')
    if not os.path.isfile(txt_fname):
        raise FCNError(f'{txt_fname}: split file not found '
                       f'(is {voc_dir} a VOC-layout folder?)')
    with open(txt_fname, 'r') as f:
        return f.read().split()


def read_voc_images(voc_dir, is_train=True, index_labels=False):
    """Read all VOC feature and label images (d2l, sec_semantic_segmentation).

    Returns two lists of (H, W, 3) uint8 arrays: the images and their label
    images as RGB colour maps (d2l), or with `index_labels` (H, W, 1)
    class indices as `read_label_indices` reads them.
    """
    images = read_split(voc_dir, 'train' if is_train else 'val')
    features, labels = [], []
    for fname in images:
        features.append(read_image(os.path.join(
            voc_dir, 'JPEGImages', f'{fname}.jpg')))
        path = os.path.join(voc_dir, 'SegmentationClass', f'{fname}.png')
        labels.append(read_label_indices(path)[:, :, None] if index_labels
                      else read_image(path))
    return features, labels


def read_label_indices(path):
    """(H, W) uint8 class indices of a label PNG of any dataset.

    Palette ('P') and single-channel ('L') PNGs hold the indices; colour
    PNGs are mapped back through the VOC palette (unknown colours: 0).
    """
    from PIL import Image
    if not os.path.isfile(path):
        raise FCNError(f'{path}: no such label file')
    try:
        img = Image.open(path)
        img.load()
    except Exception as e:  # PIL raises many types for broken files
        raise FCNError(f'{path}: cannot decode label image') from e
    if img.mode in ('P', 'L'):
        return np.array(onp.asarray(img), dtype='uint8')
    rgb = onp.asarray(img.convert('RGB')).astype(onp.int64)
    idx = (rgb[:, :, 0] * 256 + rgb[:, :, 1]) * 256 + rgb[:, :, 2]
    return np.array(palette2label()[idx], dtype='uint8')


@functools.lru_cache(maxsize=1)
def palette2label():
    """RGB code -> index for all 256 VOC palette colours (NumPy, uint8)."""
    table = onp.zeros(256 ** 3, onp.uint8)
    palette = voc_palette()
    for i in range(256):
        r, g, b = palette[3 * i:3 * i + 3]
        table[(r * 256 + g) * 256 + b] = i
    return table


def index_remap(convention='d2l'):
    """Index -> class under a convention: 'd2l' sends the void 255 to 0."""
    check_convention(convention)
    remap = onp.arange(256, dtype='float32')
    if convention == 'd2l':
        remap[IGNORE_LABEL] = 0
    return np.array(remap)


def read_classes(voc_dir):
    """The class names in `classes.txt` beside the splits, one a line, or
    None where there is none (a VOC folder)."""
    path = os.path.join(voc_dir, 'classes.txt')
    if not os.path.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        classes = [line.strip() for line in f if line.strip()]
    if len(classes) < 2:
        raise FCNError(f'{path}: needs at least two classes, one a line')
    return classes


def voc_colormap2label():
    """Build the mapping from RGB to class indices for VOC labels (d2l).

    A flat array of 256**3 float32 entries. Colours that are not in
    `VOC_COLORMAP`, the void/border colour among them, map to 0
    (background): d2l's convention.
    """
    colormap2label = np.zeros(256 ** 3)
    for i, colormap in enumerate(VOC_COLORMAP):
        colormap2label[
            (colormap[0] * 256 + colormap[1]) * 256 + colormap[2]] = i
    return colormap2label


LABEL_CONVENTIONS = ('d2l', 'voc')
VOC_BORDER = (224, 224, 192)


def check_convention(labels):
    if labels not in LABEL_CONVENTIONS:
        raise FCNError(f'--labels {labels}: choose d2l or voc')


def colormap2label_for(labels='d2l'):
    """`voc_colormap2label()` under a label convention: 'd2l' (the border
    colour counts as background, as the textbook has it) or 'voc' (the
    border is 255, ignored, as the FCN paper, gluoncv and torchvision
    have it)."""
    check_convention(labels)
    colormap2label = voc_colormap2label()
    if labels == 'voc':
        r, g, b = VOC_BORDER
        colormap2label[(r * 256 + g) * 256 + b] = IGNORE_LABEL
    return colormap2label


def voc_label_indices(colormap, colormap2label):
    """Map any RGB values in VOC labels to their class indices (d2l)."""
    colormap = colormap.astype(np.int32)
    idx = ((colormap[:, :, 0] * 256 + colormap[:, :, 1]) * 256
           + colormap[:, :, 2])
    return colormap2label[idx]


def voc_rand_crop(feature, label, height, width):
    """Randomly crop both feature and label images (d2l).

    Draws the corner with Python's `random`, as `mxnet.image.random_crop`.
    """
    feature, rect = image.random_crop(feature, (width, height))
    label = image.fixed_crop(label, *rect)
    return feature, label


def normalize_image(img, mean=RGB_MEAN, std=RGB_STD):
    """(H, W, 3) uint8 -> float32 normalised with the ImageNet statistics."""
    return (img.astype('float32') / 255 - np.array(mean)) / np.array(std)


class VOCSegDataset(gluon.data.Dataset):
    """A customized dataset to load the VOC dataset (d2l).

    Keeps the images at least `crop_size` (height, width) large, normalises
    them, and yields random crops: ((3, h, w) float32, (h, w) float32 class
    indices). As in d2l, the validation split is random-cropped too.
    `convention` picks the border's class: 'd2l' (0) or 'voc' (255,
    ignored). With `index_labels` the labels are read as class indices
    (palette or single-channel PNGs of any dataset), not VOC colours.
    Off by default, as in d2l: `flip` mirrors half the examples, `scale`
    = (low, high) resizes each by a random factor before the crop (never
    below the crop size), as the FCN literature augments.
    """
    def __init__(self, is_train, crop_size, voc_dir, convention='d2l',
                 index_labels=False, flip=False, scale=None):
        self.rgb_mean = np.array(RGB_MEAN)
        self.rgb_std = np.array(RGB_STD)
        self.crop_size = crop_size
        self.index_labels = index_labels
        self.flip, self.scale = flip, scale
        features, labels = read_voc_images(voc_dir, is_train, index_labels)
        self.features = [self.normalize_image(feature)
                         for feature in self.filter(features)]
        self.labels = self.filter(labels)
        if not self.features:  # d2l would go on with an empty dataset
            raise FCNError(no_image_fits(voc_dir, is_train, crop_size,
                                         [f.shape[:2] for f in features]))
        # the one lookup the labels need: index remap or d2l's colour map
        if index_labels:
            self.remap = index_remap(convention)
        else:
            self.colormap2label = colormap2label_for(convention)
        print('read ' + str(len(self.features)) + ' examples')

    def normalize_image(self, img):
        return normalize_image(img)

    def filter(self, imgs):
        return [img for img in imgs if (
            img.shape[0] >= self.crop_size[0] and
            img.shape[1] >= self.crop_size[1])]

    def __getitem__(self, idx):
        feature, label = augment(self.features[idx], self.labels[idx],
                                 self.crop_size, self.flip, self.scale)
        feature, label = voc_rand_crop(feature, label, *self.crop_size)
        if self.index_labels:  # (h, w, 1) indices of any dataset
            return (feature.transpose(2, 0, 1),
                    self.remap[label[:, :, 0].astype('int32')])
        return (feature.transpose(2, 0, 1),
                voc_label_indices(label, self.colormap2label))

    def __len__(self):
        return len(self.features)


def augment(feature, label, crop_size, flip=False, scale=None):
    """Random horizontal flip and rescaling of an (H, W, C) pair, drawn
    with Python's `random` like the crop: bilinear for the image, nearest
    for the label."""
    if scale:
        h, w = feature.shape[:2]
        low = max(scale[0], crop_size[0] / h, crop_size[1] / w)
        s = random.uniform(low, max(low, scale[1]))
        size = (max(round(w * s), crop_size[1]),
                max(round(h * s), crop_size[0]))
        feature = image.imresize(feature, *size, interp=1)
        label = image.imresize(label, *size, interp=0)
        if label.ndim == 2:  # OpenCV drops a single channel
            label = label[:, :, None]
    if flip and random.random() < 0.5:
        feature, label = feature[:, ::-1], label[:, ::-1]
    return feature, label


def no_image_fits(voc_dir, is_train, crop_size, sizes):
    """The message for a split with no image of `sizes` ((height, width)
    each) as large as the crop."""
    split = 'train' if is_train else 'val'
    if not sizes:
        return f'{voc_dir}: the {split} split lists no images'
    h, w = max(sizes, key=lambda s: s[0] * s[1])
    return (f'{voc_dir}: no {split} image is as large as the crop '
            f'{crop_size[0]}x{crop_size[1]} (largest: {h}x{w})')


def get_dataloader_workers():
    """Use 4 processes to read the data, as d2l does (none on Windows)."""
    return 0 if os.name == 'nt' else 4


def load_data_voc(batch_size, crop_size, voc_dir=None, num_workers=None):
    """Load the VOC semantic segmentation dataset (d2l).

    `voc_dir` defaults to d2l's download; `num_workers` to d2l's 4.
    """
    if voc_dir is None:
        voc_dir = download_voc()
    if num_workers is None:
        num_workers = get_dataloader_workers()
    train_iter = gluon.data.DataLoader(
        VOCSegDataset(True, crop_size, voc_dir), batch_size,
        shuffle=True, last_batch='discard', num_workers=num_workers)
    test_iter = gluon.data.DataLoader(
        VOCSegDataset(False, crop_size, voc_dir), batch_size,
        last_batch='discard', num_workers=num_workers)
    return train_iter, test_iter

