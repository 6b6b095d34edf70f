"""The offline synthetic dataset reads like VOC2012."""
import filecmp
import json
import os

import numpy as onp
import pytest
from PIL import Image, ImageFilter

from gluon_fcn.core.dataset import read_split
from gluon_fcn.core.labels import voc_palette
from gluon_fcn.core.synthetic import (DEFAULT_CLASSES, DEFAULT_SIZES,
                                      border_band, make_synthetic_voc)
from gluon_fcn.d2l import (read_voc_images, voc_colormap2label,
                           voc_label_indices)

SIZES = ((96, 128), (128, 160), (160, 96))


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('synth'))
    return make_synthetic_voc(out, 6, 3, seed=7, sizes=SIZES,
                              progress=False)


def label_arrays(root):
    names = read_split(root, 'trainval')
    return names, [onp.array(Image.open(os.path.join(
        root, 'SegmentationClass', f'{n}.png'))) for n in names]


def near(mask, radius):
    """Pixels within `radius` (in the max norm) of a True pixel of mask."""
    img = Image.fromarray(mask.astype(onp.uint8) * 255)
    return onp.array(img.filter(ImageFilter.MaxFilter(2 * radius + 1))) > 0


def test_layout_and_splits(synth):
    train, val = read_split(synth, 'train'), read_split(synth, 'val')
    assert len(train) == 6 and len(val) == 3 and not set(train) & set(val)
    assert read_split(synth, 'trainval') == train + val
    for name in train + val:
        assert os.path.isfile(os.path.join(synth, 'JPEGImages',
                                           f'{name}.jpg'))
    params = json.load(open(os.path.join(synth, 'synthetic.json')))
    assert params['seed'] == 7 and params['num_train'] == 6
    assert params['classes'] == list(DEFAULT_CLASSES)


def test_labels_are_voc_palette_pngs_with_void_borders(synth):
    names, labels = label_arrays(synth)
    allowed = {0, 255, *DEFAULT_CLASSES}
    for name, label in zip(names, labels):
        png = Image.open(os.path.join(synth, 'SegmentationClass',
                                      f'{name}.png'))
        jpg = Image.open(os.path.join(synth, 'JPEGImages', f'{name}.jpg'))
        assert png.mode == 'P' and png.getpalette() == voc_palette()
        assert jpg.mode == 'RGB' and jpg.size == png.size
        assert (label.shape[0], label.shape[1]) in SIZES
        assert set(onp.unique(label)) <= allowed
        objects = ~onp.isin(label, (0, 255))
        assert objects.any() and (label == 0).any()
        # the void band is a thin line along outlines, as in VOC's labels:
        # nearly all of it within 3 px of a labelled pixel, all within 6
        void = label == 255
        assert void.any()
        assert near(~void, 3)[void].mean() > 0.9
        assert near(~void, 6)[void].all()
        assert near(void, 3)[objects].mean() > 0.2  # outlines, not blobs


def test_void_band_straddles_outlines_and_spares_the_image_edge():
    instances = onp.zeros((20, 20), onp.uint8)
    instances[:10, 5:15] = 1  # rows 0-9, columns 5-14: touches the top
    band = border_band(instances)
    # 2 px on each side of the outline, like VOC's 4-5 px void lines
    assert onp.flatnonzero(band[:, 10]).tolist() == [8, 9, 10, 11]
    assert onp.flatnonzero(band[5]).tolist() == [3, 4, 5, 6,
                                                 13, 14, 15, 16]
    assert not band[0, 7:13].any()  # none along the image's own edge


def test_objects_cover_a_fair_share_of_pixels(synth):
    _, labels = label_arrays(synth)
    covered = onp.mean([(~onp.isin(lb, (0, 255))).mean() for lb in labels])
    assert 0.1 < covered < 0.8


def test_same_seed_same_bytes_other_seed_other_data(synth, tmp_path):
    again = make_synthetic_voc(str(tmp_path / 'a'), 6, 3, seed=7,
                               sizes=SIZES, progress=False)
    other = make_synthetic_voc(str(tmp_path / 'b'), 6, 3, seed=8,
                               sizes=SIZES, progress=False)
    for sub, ext in (('JPEGImages', 'jpg'), ('SegmentationClass', 'png')):
        names = [f'{n}.{ext}' for n in read_split(synth, 'trainval')]
        match, mismatch, errors = filecmp.cmpfiles(
            os.path.join(synth, sub), os.path.join(again, sub), names,
            shallow=False)
        assert match == names and not errors
        match, _, _ = filecmp.cmpfiles(
            os.path.join(synth, sub), os.path.join(other, sub), names,
            shallow=False)
        assert match == []


def test_reads_back_through_the_voc_loader(synth):
    _, labels = label_arrays(synth)
    features, colormaps = read_voc_images(synth, True)
    c2l = voc_colormap2label()
    for feature, colormap, label in zip(features, colormaps, labels):
        assert feature.shape == colormap.shape == label.shape + (3,)
        indices = voc_label_indices(colormap, c2l).asnumpy()
        # d2l's convention: the void border colour becomes background
        onp.testing.assert_array_equal(indices,
                                       onp.where(label == 255, 0, label))


def test_default_sizes_vary_and_some_fall_below_the_crop(tmp_path):
    root = make_synthetic_voc(str(tmp_path), 24, 1, seed=0, progress=False)
    features, _ = read_voc_images(root, True)
    sizes = {f.shape[:2] for f in features}
    assert len(sizes) > 2 and sizes <= set(DEFAULT_SIZES)
    fits = [h >= 320 and w >= 480 for h, w in (f.shape[:2]
                                               for f in features)]
    assert 0 < sum(fits) < len(fits)


def test_classes_outside_voc_are_a_user_error(tmp_path):
    from gluon_fcn.errors import FCNError
    with pytest.raises(FCNError, match='VOC indices 1..20'):
        make_synthetic_voc(str(tmp_path), 1, 1, classes=(0, 21),
                           progress=False)
