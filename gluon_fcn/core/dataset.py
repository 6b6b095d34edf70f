"""Segmentation datasets beyond the book: any VOC-layout folder, robust
image reading, the label conventions, index-label datasets and the
FCN literature's augmentation, on top of d2l's `VOCSegDataset`.
"""
import os
import random

import numpy as onp
from mxnet import image, np

from .. import d2l
from ..errors import FCNError, read_error
from .arrays import to_mode
from .files import check_readable
from .labels import (colormap2label_for, index_remap, read_label_indices)
from .synthetic import DEFAULT_SIZES, make_synthetic_voc


def read_image(path):
    """Decode an image file to an RGB (H, W, 3) uint8 `mxnet.numpy` array.

    Uses MXNet's OpenCV decoder, as d2l does, so the pixels are d2l's; it
    reads grey, palette, RGBA (alpha dropped), CMYK and 16-bit images
    (scaled to 8 bits). What it cannot read (GIF, WebP) goes through PIL.
    """
    check_readable(path, 'image file')
    try:
        return d2l.data.imread(path)
    except Exception:  # MXNetError from OpenCV: not a format it reads
        return np.array(pil_rgb(path), dtype='uint8')


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
    check_readable(voc_dir, 'folder')
    if not os.path.isfile(txt_fname):
        raise FCNError(f'{txt_fname}: split file not found '
                       f'(is {voc_dir} a VOC-layout folder?)')
    try:
        with open(txt_fname, 'r') as f:
            return f.read().split()
    except OSError as e:
        raise read_error(txt_fname, e) from e


def example_paths(voc_dir, name):
    """(image, label) paths of an image id in a VOC-layout folder."""
    return (os.path.join(voc_dir, 'JPEGImages', f'{name}.jpg'),
            os.path.join(voc_dir, 'SegmentationClass', f'{name}.png'))


def other_size(label_path, label_size, size):
    """The message for a label of `label_size` whose image is of `size`
    ((height, width) each)."""
    return (f'{label_path}: the label is {label_size[0]}x{label_size[1]} '
            f'but its image is {size[0]}x{size[1]} (height x width): save '
            "the label at its image's size (nearest-neighbour resampling "
            'keeps its values)')


def read_voc_split(voc_dir, is_train=True, index_labels=False):
    """d2l's `read_voc_images` with clear errors: the images, and their
    labels as RGB colour maps (d2l) or, with `index_labels`, (H, W, 1)
    uint8 class indices of a palette or single-channel PNG. A label of
    another size than its image is refused (the book would crop the two
    apart, or pair the wrong ones once the small ones are filtered)."""
    features, labels = [], []
    for name in read_split(voc_dir, 'train' if is_train else 'val'):
        image_path, label_path = example_paths(voc_dir, name)
        features.append(read_image(image_path))
        labels.append(np.array(read_label_indices(label_path)[:, :, None])
                      if index_labels else read_image(label_path))
        if labels[-1].shape[:2] != features[-1].shape[:2]:
            raise FCNError(other_size(label_path, labels[-1].shape[:2],
                                      features[-1].shape[:2]))
    return features, labels


class SegDataset(d2l.VOCSegDataset):
    """d2l's `VOCSegDataset` on any VOC-layout folder.

    Items are ((3, h, w) float32, (h, w) float32 class indices) random
    crops of `crop_size` (height, width), in the flavour of the MXNet mode
    in force. Beyond the book: `convention` picks the border's class
    ('d2l' 0 or 'voc' 255, `gluon_fcn.core.labels`); with `index_labels`
    the labels are class-index PNGs of any dataset; `flip` mirrors half
    the examples and `scale` = (low, high) resizes each by a random
    factor before the crop (off by default, as in the book). Like the
    book's, a split with no image as large as the crop is empty and says
    so by its length; it prints nothing.
    """

    def __init__(self, is_train, crop_size, voc_dir, convention='d2l',
                 index_labels=False, flip=False, scale=None):
        self.rgb_mean = np.array(d2l.RGB_MEAN)
        self.rgb_std = np.array(d2l.RGB_STD)
        self.crop_size = crop_size
        self.index_labels = index_labels
        self.flip, self.scale = flip, scale
        features, labels = read_voc_split(voc_dir, is_train, index_labels)
        self.sizes = [f.shape[:2] for f in features]
        self.features = [self.normalize_image(feature)
                         for feature in self.filter(features)]
        self.labels = self.filter(labels)
        if index_labels:  # the one lookup the labels need
            self.remap = np.array(index_remap(convention))
        else:
            self.colormap2label = colormap2label_for(convention)

    def __getitem__(self, idx):
        feature, label = augment(self.features[idx], self.labels[idx],
                                 self.crop_size, self.flip, self.scale)
        feature, label = d2l.voc_rand_crop(feature, label, *self.crop_size)
        if self.index_labels:  # (h, w, 1) indices of any dataset
            label = self.remap[label[:, :, 0].astype('int32')]
        else:
            label = d2l.voc_label_indices(label, self.colormap2label)
        return to_mode(feature.transpose(2, 0, 1)), to_mode(label)


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


def no_image_fits(voc_dir, split, crop_size, sizes):
    """The message for a split with no image of `sizes` ((height, width)
    each) as large as the crop."""
    if not sizes:
        return f'{voc_dir}: the {split} split lists no images'
    h, w = max(sizes, key=lambda s: s[0] * s[1])
    return (f'{voc_dir}: no {split} image is as large as the crop '
            f'{crop_size[0]}x{crop_size[1]} (largest: {h}x{w})')


def synthetic_data(data_dir, num_train=200, num_val=50, scale=1.0,
                   progress=True):
    """The synthetic dataset for these settings, written on first use.

    The defaults live in `data/synthetic`; other settings get a folder
    named after them, e.g. `data/synthetic_200_50_x0.5`.
    """
    folder = data_path('synthetic', data_dir, num_train, num_val, scale)
    if not os.path.isfile(os.path.join(folder, 'synthetic.json')):
        sizes = tuple((round(h * scale), round(w * scale))
                      for h, w in DEFAULT_SIZES)
        make_synthetic_voc(folder, num_train, num_val, seed=0, sizes=sizes,
                           progress=progress)
    return folder


def data_path(data, data_dir='data', synth_train=200, synth_val=50,
              synth_scale=1.0):
    """Where `resolve_data` keeps `data`, without making or fetching it."""
    if data == 'synthetic':
        name = 'synthetic'
        if (synth_train, synth_val, synth_scale) != (200, 50, 1.0):
            name += f'_{synth_train}_{synth_val}_x{synth_scale:g}'
        return os.path.join(data_dir, name)
    if data == 'voc2012':
        return os.path.join(data_dir, d2l.VOC_SUBDIR)
    return data


def resolve_data(data, data_dir='data', synth_train=200, synth_val=50,
                 synth_scale=1.0, progress=True):
    """The VOC-layout folder behind `data`: 'synthetic' (made once),
    'voc2012' (downloaded once, d2l's) or a folder."""
    if data == 'synthetic':
        return synthetic_data(data_dir, synth_train, synth_val, synth_scale,
                              progress)
    if data == 'voc2012':
        return d2l.download_voc(data_dir)
    if not os.path.isdir(data):
        raise FCNError(f'{data} is not a folder (nor synthetic or voc2012)')
    check_readable(data, 'folder')
    return data
