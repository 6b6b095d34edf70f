"""The Pascal VOC2012 semantic segmentation data, as in d2l.

Ports the functions of d2l's "Semantic Segmentation and the Dataset"
section (:numref:`sec_semantic_segmentation`) with their names and
signatures. They return `mxnet.numpy` arrays whether or not MXNet's NumPy
mode is on (d2l 1.0.3's own `VOCSegDataset` fails when it is off).
"""
import hashlib
import os
import shutil
import tarfile
import tempfile

import numpy as onp
from mxnet import gluon, image
from mxnet import np
from tqdm import tqdm

from .errors import FCNError
from .files import atomic_path

VOC_URL = ('http://d2l-data.s3-accelerate.amazonaws.com/'
           'VOCtrainval_11-May-2012.tar')
VOC_SHA1 = '4e443f8a2eca6b1dac8a6c57641b67dd40621a49'
VOC_SUBDIR = os.path.join('VOCdevkit', 'VOC2012')

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


def file_sha1(path):
    sha1 = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            sha1.update(chunk)
    return sha1.hexdigest()


def download(url, path, sha1=None):
    """Download `url` to `path` through a temporary file, checking its sha1.

    An existing file with the right sha1 is kept. A download that fails or
    does not match leaves nothing at `path`.
    """
    if os.path.exists(path) and (sha1 is None or file_sha1(path) == sha1):
        return path
    import requests
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f'{path}.part'
    try:
        with requests.get(url, stream=True, timeout=60) as r:
            r.raise_for_status()
            total = int(r.headers.get('content-length', 0)) or None
            with open(tmp, 'wb') as f, tqdm(
                    total=total, unit='B', unit_scale=True,
                    desc=os.path.basename(path)) as bar:
                for chunk in r.iter_content(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
    except (requests.RequestException, OSError) as e:
        _remove(tmp)
        raise FCNError(f'cannot download {url}: {e}') from e
    if sha1 is not None and file_sha1(tmp) != sha1:
        _remove(tmp)
        raise FCNError(f'{url}: sha1 mismatch (expected {sha1}); '
                       'the download was removed')
    os.replace(tmp, path)
    return path


def _remove(path):
    if os.path.exists(path):
        os.remove(path)


def safe_extract(tar_path, dest):
    """Extract `tar_path` into `dest`, refusing members that land outside."""
    root = os.path.realpath(dest)
    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
        for m in members:
            target = os.path.realpath(os.path.join(root, m.name))
            link = (os.path.realpath(os.path.join(
                os.path.dirname(target), m.linkname))
                if m.issym() or m.islnk() else root)
            if not all(p == root or p.startswith(root + os.sep)
                       for p in (target, link)):
                raise FCNError(f'{tar_path}: member {m.name!r} would be '
                               'extracted outside the target folder')
        tar.extractall(root, members)


def download_voc(data_dir=os.path.join('..', 'data'), url=VOC_URL,
                 sha1=VOC_SHA1):
    """Download, verify and extract VOC2012; return the VOC2012 folder.

    The default `data_dir` is d2l's. Extraction goes to a temporary folder
    that is renamed into place only when complete.
    """
    voc_dir = os.path.join(data_dir, VOC_SUBDIR)
    if os.path.isfile(os.path.join(voc_dir, 'ImageSets', 'Segmentation',
                                   'train.txt')):
        return voc_dir
    tar_path = download(url, os.path.join(data_dir, url.split('/')[-1]),
                        sha1)
    tmp = tempfile.mkdtemp(prefix='.extract-', dir=data_dir)
    try:
        safe_extract(tar_path, tmp)
        if not os.path.isdir(os.path.join(tmp, VOC_SUBDIR)):
            raise FCNError(f'{tar_path}: has no {VOC_SUBDIR} folder')
        os.makedirs(os.path.dirname(voc_dir), exist_ok=True)
        if os.path.exists(voc_dir):
            shutil.rmtree(voc_dir)
        os.replace(os.path.join(tmp, VOC_SUBDIR), voc_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return voc_dir


def read_image(path):
    """Decode an image file to an RGB (H, W, 3) uint8 `mxnet.numpy` array.

    Uses MXNet's OpenCV decoder, as d2l does, so the pixels are d2l's.
    """
    if not os.path.isfile(path):
        raise FCNError(f'{path}: no such image file')
    try:
        img = image.imread(path)
    except Exception as e:  # MXNetError from OpenCV: unreadable image
        raise FCNError(f'{path}: cannot decode image') from e
    return img if isinstance(img, np.ndarray) else img.as_np_ndarray()


def read_split(voc_dir, split):
    """The image ids listed in ImageSets/Segmentation/{split}.txt."""
    txt_fname = os.path.join(voc_dir, 'ImageSets', 'Segmentation',
                             f'{split}.txt')
    if not os.path.isfile(txt_fname):
        raise FCNError(f'{txt_fname}: split file not found '
                       f'(is {voc_dir} a VOC-layout folder?)')
    with open(txt_fname, 'r') as f:
        return f.read().split()


def read_voc_images(voc_dir, is_train=True):
    """Read all VOC feature and label images (d2l, sec_semantic_segmentation).

    Returns two lists of (H, W, 3) uint8 arrays: the images and their label
    images as RGB colour maps.
    """
    images = read_split(voc_dir, 'train' if is_train else 'val')
    features, labels = [], []
    for fname in images:
        features.append(read_image(os.path.join(
            voc_dir, 'JPEGImages', f'{fname}.jpg')))
        labels.append(read_image(os.path.join(
            voc_dir, 'SegmentationClass', f'{fname}.png')))
    return features, labels


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


def colormap2label_for(labels='d2l'):
    """`voc_colormap2label()` under a label convention: 'd2l' (the border
    colour counts as background, as the textbook has it) or 'voc' (the
    border is 255, ignored, as the FCN paper, gluoncv and torchvision
    have it)."""
    if labels not in LABEL_CONVENTIONS:
        raise FCNError(f'--labels {labels}: choose d2l or voc')
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
    ignored).
    """
    def __init__(self, is_train, crop_size, voc_dir, convention='d2l'):
        self.rgb_mean = np.array(RGB_MEAN)
        self.rgb_std = np.array(RGB_STD)
        self.crop_size = crop_size
        features, labels = read_voc_images(voc_dir, is_train=is_train)
        self.features = [self.normalize_image(feature)
                         for feature in self.filter(features)]
        self.labels = self.filter(labels)
        if not self.features:  # d2l would go on with an empty dataset
            raise FCNError(no_image_fits(voc_dir, is_train, crop_size,
                                         features))
        self.colormap2label = colormap2label_for(convention)
        print('read ' + str(len(self.features)) + ' examples')

    def normalize_image(self, img):
        return normalize_image(img)

    def filter(self, imgs):
        return [img for img in imgs if (
            img.shape[0] >= self.crop_size[0] and
            img.shape[1] >= self.crop_size[1])]

    def __getitem__(self, idx):
        feature, label = voc_rand_crop(self.features[idx], self.labels[idx],
                                       *self.crop_size)
        return (feature.transpose(2, 0, 1),
                voc_label_indices(label, self.colormap2label))

    def __len__(self):
        return len(self.features)


def no_image_fits(voc_dir, is_train, crop_size, features):
    split = 'train' if is_train else 'val'
    if not features:
        return f'{voc_dir}: the {split} split lists no images'
    h, w = max((f.shape[:2] for f in features),
               key=lambda s: s[0] * s[1])
    return (f'{voc_dir}: no {split} image is at least {crop_size[0]}x'
            f'{crop_size[1]} (the crop); the largest is {h}x{w}')


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

