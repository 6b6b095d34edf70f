"""The Pascal VOC2012 semantic segmentation data, as d2l 1.0.3 has it.

Ports the functions of d2l's "Semantic Segmentation and the Dataset"
section (:numref:`sec_semantic_segmentation`) with their names,
signatures and behaviour, quirks included: the border colour maps to
background, the validation split is random-cropped too, and a split with
no image as large as the crop gives an empty dataset. They return
`mxnet.numpy` arrays, as in the book; unlike d2l 1.0.3's own
`VOCSegDataset`, they also work with MXNet's NumPy mode off.
"""
import os
import sys

from mxnet import gluon, image, np

from .download import download_voc

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

# ImageNet statistics the pretrained backbones were trained with
RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)


def imread(path):
    """`image.imread` as an `mxnet.numpy` array in either MXNet mode."""
    img = image.imread(path)
    return img if isinstance(img, np.ndarray) else img.as_np_ndarray()


def read_voc_images(voc_dir, is_train=True):
    """Read all VOC feature and label images.

    Defined in :numref:`sec_semantic_segmentation`"""
    txt_fname = os.path.join(voc_dir, 'ImageSets', 'Segmentation',
                             'train.txt' if is_train else 'val.txt')
    with open(txt_fname, 'r') as f:
        images = f.read().split()
    features, labels = [], []
    for fname in images:
        features.append(imread(os.path.join(
            voc_dir, 'JPEGImages', f'{fname}.jpg')))
        labels.append(imread(os.path.join(
            voc_dir, 'SegmentationClass', f'{fname}.png')))
    return features, labels


def voc_colormap2label():
    """Build the mapping from RGB to class indices for VOC labels.

    A flat array of 256**3 float32 entries; colours not in `VOC_COLORMAP`,
    the void border (224, 224, 192) among them, map to 0 (background).

    Defined in :numref:`sec_semantic_segmentation`"""
    colormap2label = np.zeros(256 ** 3)
    for i, colormap in enumerate(VOC_COLORMAP):
        colormap2label[
            (colormap[0] * 256 + colormap[1]) * 256 + colormap[2]] = i
    return colormap2label


def voc_label_indices(colormap, colormap2label):
    """Map any RGB values in VOC labels to their class indices.

    Defined in :numref:`sec_semantic_segmentation`"""
    colormap = colormap.astype(np.int32)
    idx = ((colormap[:, :, 0] * 256 + colormap[:, :, 1]) * 256
           + colormap[:, :, 2])
    return colormap2label[idx]


def voc_rand_crop(feature, label, height, width):
    """Randomly crop both feature and label images.

    Defined in :numref:`sec_semantic_segmentation`"""
    feature, rect = image.random_crop(feature, (width, height))
    label = image.fixed_crop(label, *rect)
    return feature, label


class VOCSegDataset(gluon.data.Dataset):
    """A customized dataset to load the VOC dataset.

    Items are ((3, h, w) float32 normalised image, (h, w) float32 class
    indices) random crops of `crop_size` (height, width).

    Defined in :numref:`sec_semantic_segmentation`"""

    def __init__(self, is_train, crop_size, voc_dir):
        self.rgb_mean = np.array(RGB_MEAN)
        self.rgb_std = np.array(RGB_STD)
        self.crop_size = crop_size
        features, labels = read_voc_images(voc_dir, is_train=is_train)
        self.features = [self.normalize_image(feature)
                         for feature in self.filter(features)]
        self.labels = self.filter(labels)
        self.colormap2label = voc_colormap2label()
        print('read ' + str(len(self.features)) + ' examples')

    def normalize_image(self, img):
        return (img.astype('float32') / 255 - self.rgb_mean) / self.rgb_std

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


def get_dataloader_workers():
    """Use 4 processes to read the data except for Windows.

    Defined in :numref:`sec_utils`"""
    return 0 if sys.platform.startswith('win') else 4


def load_data_voc(batch_size, crop_size, voc_dir=None, num_workers=None):
    """Load the VOC semantic segmentation dataset.

    Beyond d2l: `voc_dir` (default: d2l's download) and `num_workers`
    (default: d2l's 4).

    Defined in :numref:`sec_semantic_segmentation`"""
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
