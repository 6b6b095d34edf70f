"""Pascal VOC2012 for the v1 chapter, under d2lzh 1.0.0's names.

Ported from d2lzh 1.0.0 (``d2lzh/utils.py``), the library of the v1 book's
section 9.9 "Semantic Segmentation and the Pascal VOC2012 Dataset", which
section 9.10 "Fully Convolutional Networks (FCN)" calls. Arrays are legacy
``mx.nd`` NDArrays; d2lzh's behaviour is kept, quirks included (see
`voc_label_indices` and `VOCSegDataset`).
"""
import os

from mxnet import image, nd
from mxnet.gluon import data as gdata

from ..d2l.download import download_voc

VOC_CLASSES = ['background', 'aeroplane', 'bicycle', 'bird', 'boat',
               'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
               'diningtable', 'dog', 'horse', 'motorbike', 'person',
               'potted plant', 'sheep', 'sofa', 'train', 'tv/monitor']

VOC_COLORMAP = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0],
                [0, 0, 128], [128, 0, 128], [0, 128, 128], [128, 128, 128],
                [64, 0, 0], [192, 0, 0], [64, 128, 0], [192, 128, 0],
                [64, 0, 128], [192, 0, 128], [64, 128, 128], [192, 128, 128],
                [0, 64, 0], [128, 64, 0], [0, 192, 0], [128, 192, 0],
                [0, 64, 128]]

VOC_URL = ('http://host.robots.ox.ac.uk/pascal/VOC/voc2012'
           '/VOCtrainval_11-May-2012.tar')
VOC_SHA1 = '4e443f8a2eca6b1dac8a6c57641b67dd40621a49'

# ImageNet's statistics: the backbone's pretrained weights expect them
RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)


def download_voc_pascal(data_dir='../data'):
    """Download and extract Pascal VOC2012; return its VOC2012 folder.

    Defined in d2lzh 1.0.0 (d2l-zh v1 section 9.9), with its URL and
    sha1. Unlike d2lzh, the tar goes through a temporary file checked
    against the sha1, members that would land outside `data_dir` are
    refused, and a folder already extracted is not extracted again
    (`gluon_fcn.d2l.download`).

    Parameters
    ----------
    data_dir : str
        Where the tar is saved and ``VOCdevkit/VOC2012`` is extracted.

    Returns
    -------
    str
        ``data_dir/VOCdevkit/VOC2012``, as d2lzh returns it.
    """
    return download_voc(data_dir, url=VOC_URL, sha1=VOC_SHA1)


def read_voc_images(root='../data/VOCdevkit/VOC2012', is_train=True):
    """Read the images and colour labels of a split, as (HWC uint8) lists.

    Defined in d2lzh 1.0.0 (d2l-zh v1 section 9.9): ``train.txt`` or
    ``val.txt`` of ``ImageSets/Segmentation`` names the files.

    Parameters
    ----------
    root : str
        A folder in the VOC2012 layout.
    is_train : bool
        Read the training split, else the validation split.

    Returns
    -------
    tuple of (list of NDArray, list of NDArray)
        The RGB images and the RGB colour labels, each (H, W, 3) uint8.
    """
    split = 'train.txt' if is_train else 'val.txt'
    with open(os.path.join(root, 'ImageSets', 'Segmentation', split)) as f:
        images = f.read().split()
    features = [image.imread(os.path.join(root, 'JPEGImages', f'{i}.jpg'))
                for i in images]
    labels = [image.imread(os.path.join(root, 'SegmentationClass',
                                        f'{i}.png')) for i in images]
    return features, labels


def voc_label_indices(colormap, colormap2label):
    """Map an (H, W, 3) colour label to (H, W) class indices.

    Defined in d2lzh 1.0.0 (d2l-zh v1 section 9.9). `colormap2label` is indexed
    by ``(r * 256 + g) * 256 + b``; the chapter fills it with zeros and the
    21 VOC colours, so any other colour, the void border (224, 224, 192)
    included, becomes 0, background: d2lzh's convention.

    Parameters
    ----------
    colormap : NDArray
        (H, W, 3) RGB label.
    colormap2label : NDArray
        (256 ** 3,) class index of each colour, float32 in the chapter.

    Returns
    -------
    NDArray
        (H, W) class indices, of `colormap2label`'s dtype.
    """
    colormap = colormap.astype('int32')
    idx = ((colormap[:, :, 0] * 256 + colormap[:, :, 1]) * 256
           + colormap[:, :, 2])
    return colormap2label[idx]


def voc_rand_crop(feature, label, height, width):
    """Crop the same random (height, width) window of an image and label.

    Defined in d2lzh 1.0.0 (d2l-zh v1 section 9.9). The window is drawn with
    Python's `random` (``mx.image.random_crop``), so `random.seed` fixes
    it.
    """
    feature, rect = image.random_crop(feature, (width, height))
    label = image.fixed_crop(label, *rect)
    return feature, label


def normalize_image(img):
    """Scale an (H, W, 3) uint8 image to [0, 1], then standardise each
    channel with ImageNet's mean and std, as d2lzh's
    `VOCSegDataset.normalize_image` does (d2l-zh v1 section 9.9)."""
    mean, std = nd.array(RGB_MEAN), nd.array(RGB_STD)
    return (img.astype('float32') / 255 - mean) / std


class VOCSegDataset(gdata.Dataset):
    """Random crops of a VOC split: ((3, h, w) float32, (h, w) labels).

    Defined in d2lzh 1.0.0 (d2l-zh v1 section 9.9). Images smaller than
    `crop_size` are dropped and the number kept is printed
    (``read 1114 examples``). Where no image holds the crop the data set
    is empty and prints ``read 0 examples``: like d2lzh, this layer does
    not raise. Each access draws a new crop, for the validation split
    too.

    Parameters
    ----------
    is_train : bool
        Read ``train.txt``, else ``val.txt``.
    crop_size : tuple of int
        (height, width) of the crops.
    voc_dir : str
        A folder in the VOC2012 layout.
    colormap2label : NDArray
        (256 ** 3,) class index of each colour (`voc_label_indices`).
    """

    def __init__(self, is_train, crop_size, voc_dir, colormap2label):
        self.crop_size = crop_size
        data, labels = read_voc_images(root=voc_dir, is_train=is_train)
        self.data = [self.normalize_image(im) for im in self.filter(data)]
        self.labels = self.filter(labels)
        self.colormap2label = colormap2label
        print(f'read {len(self.data)} examples')

    def normalize_image(self, data):
        """The chapter's `predict` calls this; see `normalize_image`."""
        return normalize_image(data)

    def filter(self, images):
        return [im for im in images if (
            im.shape[0] >= self.crop_size[0] and
            im.shape[1] >= self.crop_size[1])]

    def __getitem__(self, idx):
        data, labels = voc_rand_crop(self.data[idx], self.labels[idx],
                                     *self.crop_size)
        return (data.transpose((2, 0, 1)),  # (3, h, w)
                voc_label_indices(labels, self.colormap2label))

    def __len__(self):
        return len(self.data)
