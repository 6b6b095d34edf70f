"""The VOC data functions against d2l's own, on real VOC files."""
import contextlib
import functools
import http.server
import io
import os
import random
import subprocess
import sys
import tarfile
import threading

import numpy as onp
import pytest
from PIL import Image

from mxnet import np

from gluon_fcn import d2l as book
from gluon_fcn.core import dataset, labels as conventions
from gluon_fcn.errors import FCNError


def test_constants_match_d2l(d2l):
    assert book.VOC_COLORMAP == d2l.VOC_COLORMAP
    assert book.VOC_CLASSES == d2l.VOC_CLASSES
    assert (book.VOC_URL, book.VOC_SHA1) == d2l.DATA_HUB['voc2012']
    palette = conventions.voc_palette()
    assert [palette[3 * i:3 * i + 3] for i in range(21)] == book.VOC_COLORMAP
    assert palette[3 * 255:] == [224, 224, 192]


@pytest.mark.parametrize('is_train', [True, False])
def test_read_voc_images_equals_d2l(voc_mini, d2l, is_train):
    ours = book.read_voc_images(voc_mini, is_train)
    theirs = d2l.read_voc_images(voc_mini, is_train)
    assert len(ours[0]) == len(theirs[0]) == len(ours[1])
    for a, b in zip(ours[0] + ours[1], theirs[0] + theirs[1]):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert (a == b).all()


def test_label_indices_equal_d2l_and_border_is_background(voc_mini, d2l):
    c2l = book.voc_colormap2label()
    assert (c2l == d2l.voc_colormap2label()).all()
    _, labels = book.read_voc_images(voc_mini, True)
    name = dataset.read_split(voc_mini, 'train')[0]
    palette_idx = onp.array(Image.open(os.path.join(
        voc_mini, 'SegmentationClass', f'{name}.png')))
    ours = book.voc_label_indices(labels[0], c2l)
    assert (ours == d2l.voc_label_indices(labels[0], c2l)).all()
    assert (palette_idx == 255).any()
    expected = onp.where(palette_idx == 255, 0, palette_idx)
    onp.testing.assert_array_equal(ours.asnumpy(), expected)


def test_rand_crop_equals_d2l(voc_mini, d2l):
    features, labels = book.read_voc_images(voc_mini, True)
    for seed in range(3):
        random.seed(seed)
        a = book.voc_rand_crop(features[0], labels[0], 200, 300)
        random.seed(seed)
        b = d2l.voc_rand_crop(features[0], labels[0], 200, 300)
        assert a[0].shape == (200, 300, 3)
        assert (a[0] == b[0]).all() and (a[1] == b[1]).all()


@pytest.mark.parametrize('is_train', [True, False])
def test_dataset_equals_d2l(voc_mini, d2l, is_train, capsys):
    ours = book.VOCSegDataset(is_train, (200, 300), voc_mini)
    theirs = d2l.VOCSegDataset(is_train, (200, 300), voc_mini)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == printed[1] == f'read {len(theirs)} examples'
    assert len(ours) == len(theirs)
    for i in range(len(ours)):
        random.seed(i)
        x, y = ours[i]
        random.seed(i)
        x2, y2 = theirs[i]
        assert x.shape == (3, 200, 300) and y.shape == (200, 300)
        assert (x == x2).all() and (y == y2).all()


def test_crop_filter_and_normalisation(voc_mini):
    features, _ = book.read_voc_images(voc_mini, True)
    sizes = [f.shape[:2] for f in features]
    ds = book.VOCSegDataset(True, (320, 480), voc_mini)
    assert len(ds) == sum(h >= 320 and w >= 480 for h, w in sizes) < \
        len(sizes)
    img = [f for f in features if f.shape[0] >= 320][0].asnumpy()
    mean = onp.array([0.485, 0.456, 0.406])
    std = onp.array([0.229, 0.224, 0.225])
    onp.testing.assert_allclose(ds.features[0].asnumpy(),
                                (img / 255 - mean) / std, rtol=1e-5,
                                atol=1e-5)


def test_dataset_works_without_numpy_mode(voc_mini):
    code = ('from mxnet import npx\n'
            'import gluon_fcn.d2l as d\n'
            'npx.reset_np()\n'
            f'ds = d.VOCSegDataset(True, (200, 300), {voc_mini!r})\n'
            'x, y = ds[0]\n'
            'print(type(x).__module__, x.shape, y.shape)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True).stdout
    assert out.splitlines()[-1] == 'mxnet.numpy (3, 200, 300) (200, 300)'


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'not a jpeg')
    with pytest.raises(FCNError, match='bad.jpg'):
        dataset.read_image(str(bad))
    with pytest.raises(FCNError, match='split file not found'):
        dataset.read_voc_split(str(tmp_path))


def make_voc_tar(voc_dir, path, extra=None):
    """A tar shaped like VOCtrainval_11-May-2012.tar around `voc_dir`."""
    with tarfile.open(path, 'w') as tar:
        tar.add(voc_dir, arcname=book.VOC_SUBDIR)
        if extra:
            info = tarfile.TarInfo(extra)
            info.size = 4
            tar.addfile(info, io.BytesIO(b'evil'))
    return path


@contextlib.contextmanager
def serve(root, handler=http.server.SimpleHTTPRequestHandler):
    """Serve the folder `root` on loopback with `handler`; yield the URL.
    """
    handler = functools.partial(handler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_port}'
    finally:
        server.shutdown()


@pytest.fixture
def http_dir(tmp_path):
    """Serve a folder on loopback; yields (folder, base URL)."""
    root = tmp_path / 'www'
    root.mkdir()
    with serve(root) as base:
        yield root, base


def test_download_voc_verifies_and_extracts(synth_voc, http_dir, tmp_path):
    root, base = http_dir
    tar = make_voc_tar(synth_voc, str(root / 'VOC.tar'))
    sha1 = book.download.file_sha1(tar)
    data_dir = tmp_path / 'data'
    voc_dir = book.download_voc(str(data_dir), f'{base}/VOC.tar', sha1)
    assert voc_dir == os.path.join(str(data_dir), book.VOC_SUBDIR)
    assert dataset.read_split(voc_dir, 'train') == \
        dataset.read_split(synth_voc, 'train')
    assert book.download.file_sha1(str(data_dir / 'VOC.tar')) == sha1
    # extracted once: no temporary folders left behind, a second call
    # neither downloads nor extracts
    assert sorted(os.listdir(data_dir)) == ['VOC.tar', 'VOCdevkit']
    os.remove(tar)
    assert book.download_voc(str(data_dir), f'{base}/VOC.tar', sha1) == \
        voc_dir


def test_download_with_wrong_sha1_leaves_nothing(synth_voc, http_dir,
                                                 tmp_path):
    root, base = http_dir
    make_voc_tar(synth_voc, str(root / 'VOC.tar'))
    with pytest.raises(FCNError, match='sha1 mismatch'):
        book.download_voc(str(tmp_path / 'd'), f'{base}/VOC.tar', '0' * 40)
    assert os.listdir(tmp_path / 'd') == []
    with pytest.raises(FCNError, match='cannot download'):
        book.download_voc(str(tmp_path / 'd'), f'{base}/missing.tar')


def test_tar_members_outside_the_folder_are_refused(synth_voc, http_dir,
                                                    tmp_path):
    root, base = http_dir
    tar = make_voc_tar(synth_voc, str(root / 'VOC.tar'),
                       extra='../escaped.txt')
    data_dir = tmp_path / 'data'
    with pytest.raises(FCNError, match='escaped.txt'):
        book.download_voc(str(data_dir), f'{base}/VOC.tar',
                          book.download.file_sha1(tar))
    assert not (tmp_path / 'escaped.txt').exists()
    assert not (data_dir / 'VOCdevkit').exists()
    assert sorted(os.listdir(data_dir)) == ['VOC.tar']


def test_no_image_as_large_as_the_crop_is_empty_as_in_d2l(voc_mini, d2l,
                                                          capsys):
    """The book's quirk: an empty dataset and `read 0 examples`; the
    application says why (test_reliability)."""
    ours = book.VOCSegDataset(True, (640, 640), voc_mini)
    theirs = d2l.VOCSegDataset(True, (640, 640), voc_mini)
    assert len(ours) == len(theirs) == 0
    assert capsys.readouterr().out == 'read 0 examples\n' * 2
    assert len(dataset.SegDataset(True, (640, 640), voc_mini)) == 0
    assert capsys.readouterr().out == ''  # core prints nothing


def test_label_conventions_on_real_voc(voc_mini):
    """'d2l': the border colour is background; 'voc': it is 255."""
    _, labels = book.read_voc_images(voc_mini, True)
    name = dataset.read_split(voc_mini, 'train')[0]
    palette_idx = onp.array(Image.open(os.path.join(
        voc_mini, 'SegmentationClass', f'{name}.png')))
    voc = book.voc_label_indices(labels[0], conventions.colormap2label_for('voc'))
    onp.testing.assert_array_equal(voc.asnumpy(), palette_idx)
    d2l = book.voc_label_indices(labels[0], conventions.colormap2label_for('d2l'))
    assert (d2l == book.voc_label_indices(labels[0],
                                          book.voc_colormap2label())).all()
    random.seed(0)
    _, y = dataset.SegDataset(True, (200, 300), voc_mini, 'voc')[0]
    assert set(onp.unique(y.asnumpy())) >= {0, 255}
    with pytest.raises(FCNError, match='coco'):
        conventions.colormap2label_for('coco')


def test_augmentation_keeps_image_and_label_aligned(synth_voc):
    """Flip and rescale move image and label together: an image whose
    first channel is its label's class stays equal to it after both."""
    ds = dataset.SegDataset(True, (96, 128), synth_voc, 'voc',
                            index_labels=True, flip=True, scale=(0.6, 1.8))
    stripes = onp.repeat(onp.arange(1, 5), 40)[None, :].repeat(120, 0)
    ds.labels[0] = np.array(stripes[:, :, None], dtype='uint8')
    ds.features[0] = np.array(
        onp.repeat(stripes[:, :, None], 3, 2), dtype='float32')
    orders = set()
    for seed in range(8):
        random.seed(seed)
        x, y = ds[0]
        assert x.shape == (3, 96, 128) and y.shape == (96, 128)
        x0, y = x[0].asnumpy(), y.asnumpy()
        assert (onp.abs(x0 - y) < 0.5).mean() > 0.95
        orders.add(bool(y[0, 0] < y[0, -1]))
    assert orders == {True, False}  # some examples were mirrored
