"""gluon_fcn.v1 against d2lzh 1.0.0's own functions, in legacy mode.

Each test runs with MXNet's NumPy mode off and restores the mode it found.
The data tests read the real VOC files of voc-mini.
"""
import io
import os
import random
import re
import subprocess
import sys
import tarfile

import mxnet as mx
import numpy as onp
import pytest
from mxnet import gluon, image, init, nd
from mxnet.gluon import data as gdata, loss as gloss, model_zoo, nn

from gluon_fcn import v1
from gluon_fcn.errors import FCNError

BORDER = (224, 224, 192)  # VOC's void colour, in no class
EPOCH_LINE = (r'epoch \d+, loss \d+\.\d{4}, train acc \d\.\d{3}, '
              r'test acc \d\.\d{3}, time \d+\.\d sec')


# the v1 API is legacy ``nd``: every test runs with NumPy mode off
pytestmark = pytest.mark.usefixtures('legacy_mode')


@pytest.fixture(scope='module')
def d2lzh():
    return pytest.importorskip('d2lzh')


@pytest.fixture
def colormap2label():
    """The chapter's table: zeros, then each VOC colour's class index."""
    c2l = nd.zeros(256 ** 3)
    for i, cm in enumerate(v1.VOC_COLORMAP):
        c2l[(cm[0] * 256 + cm[1]) * 256 + cm[2]] = i
    return c2l


def seed_all(seed):
    """Crops draw from `random`, shuffles from numpy, weights from MXNet.
    """
    random.seed(seed)
    onp.random.seed(seed)
    mx.random.seed(seed)


def test_constants_equal_d2lzh(d2lzh):
    assert v1.VOC_CLASSES == d2lzh.VOC_CLASSES
    assert v1.VOC_COLORMAP == d2lzh.VOC_COLORMAP


@pytest.mark.parametrize('is_train', [True, False])
def test_read_voc_images_equals_d2lzh(voc_mini, d2lzh, is_train):
    ours = v1.read_voc_images(voc_mini, is_train)
    theirs = d2lzh.read_voc_images(voc_mini, is_train)
    assert len(ours[0]) == len(ours[1]) == len(theirs[0]) > 0
    for a, b in zip(ours[0] + ours[1], theirs[0] + theirs[1]):
        assert isinstance(a, nd.NDArray) and a.dtype == b.dtype == onp.uint8
        assert a.shape == b.shape and (a == b).min() == 1


def test_label_indices_equal_d2lzh_and_border_is_background(
        voc_mini, d2lzh, colormap2label):
    _, labels = v1.read_voc_images(voc_mini, True)
    palette = onp.array(v1.VOC_COLORMAP)
    borders = 0
    for label in labels:
        ours = v1.voc_label_indices(label, colormap2label)
        theirs = d2lzh.voc_label_indices(label, colormap2label)
        assert (ours == theirs).min() == 1
        # independently: a class colour gives its index, any other 0
        rgb = label.asnumpy()
        hits = (rgb[:, :, None, :] == palette).all(-1)  # (H, W, 21)
        expected = onp.where(hits.any(-1), hits.argmax(-1), 0)
        onp.testing.assert_array_equal(ours.asnumpy(), expected)
        borders += (rgb == BORDER).all(-1).sum()
    assert borders > 0  # the quirk was exercised: void became 0


def test_rand_crop_equals_d2lzh(voc_mini, d2lzh):
    features, labels = v1.read_voc_images(voc_mini, True)
    crops = set()
    for seed in range(3):
        random.seed(seed)
        a = v1.voc_rand_crop(features[0], labels[0], 200, 300)
        random.seed(seed)
        b = d2lzh.voc_rand_crop(features[0], labels[0], 200, 300)
        assert a[0].shape == (200, 300, 3) and a[1].shape == (200, 300, 3)
        assert (a[0] == b[0]).min() == 1 and (a[1] == b[1]).min() == 1
        crops.add(a[0].asnumpy().tobytes())
    assert len(crops) > 1  # the seeds drew different windows


@pytest.mark.parametrize('is_train', [True, False])
def test_dataset_items_equal_d2lzh(voc_mini, d2lzh, colormap2label,
                                   is_train, capsys):
    crop = (320, 480)  # the chapter's: drops the smaller images
    ours = v1.VOCSegDataset(is_train, crop, voc_mini, colormap2label)
    theirs = d2lzh.VOCSegDataset(is_train, crop, voc_mini, colormap2label)
    sizes = [f.shape[:2] for f in v1.read_voc_images(voc_mini, is_train)[0]]
    kept = sum(h >= crop[0] and w >= crop[1] for h, w in sizes)
    assert capsys.readouterr().out == f'read {kept} examples\n' * 2
    assert len(ours) == len(theirs) == kept > 0
    for i in range(len(ours)):
        random.seed(i)
        x, y = ours[i]
        random.seed(i)
        x2, y2 = theirs[i]
        assert x.shape == (3, *crop) and y.shape == crop
        assert x.dtype == x2.dtype and y.dtype == y2.dtype == onp.float32
        assert (x == x2).min() == 1 and (y == y2).min() == 1


def test_oversized_crop_reads_0_examples(voc_mini, d2lzh, colormap2label,
                                         capsys):
    ours = v1.VOCSegDataset(True, (400, 480), voc_mini, colormap2label)
    theirs = d2lzh.VOCSegDataset(True, (400, 480), voc_mini, colormap2label)
    assert capsys.readouterr().out == 'read 0 examples\n' * 2
    assert len(ours) == len(theirs) == 0


def chapter_net(seed):
    """The chapter's FCN, its ResNet-18 initialised instead of pretrained.
    """
    mx.random.seed(seed)
    pretrained_net = model_zoo.vision.resnet18_v2(pretrained=False)
    net = nn.HybridSequential()
    for layer in pretrained_net.features[:-2]:
        net.add(layer)
    net.add(nn.Conv2D(21, kernel_size=1),
            nn.Conv2DTranspose(21, kernel_size=64, padding=16, strides=32))
    net[:-2].initialize(init.Xavier())
    net[-1].initialize(init.Constant(v1.bilinear_kernel(21, 21, 64)))
    net[-2].initialize(init=init.Xavier())
    net(nd.zeros((1, 3, 64, 96)))  # ends deferred init: weights readable
    return net


def weights(net):
    return [p.data(mx.cpu(0)).asnumpy()
            for p in net.collect_params().values()]


def train_chapter(lib, voc_dir, colormap2label, ctx):
    """Two epochs of the chapter's training cell with `lib` as d2l."""
    net = chapter_net(0)
    crop = (64, 96)
    train_iter = gdata.DataLoader(
        lib.VOCSegDataset(True, crop, voc_dir, colormap2label), 2,
        shuffle=True, last_batch='discard')
    test_iter = gdata.DataLoader(
        lib.VOCSegDataset(False, crop, voc_dir, colormap2label), 2,
        last_batch='discard')
    net.collect_params().reset_ctx(ctx)
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.1, 'wd': 1e-3})
    seed_all(1)
    lib.train(train_iter, test_iter, net, gloss.SoftmaxCrossEntropyLoss(
        axis=1), trainer, ctx, num_epochs=2)
    return weights(net)


def test_train_equals_d2lzh_and_prints_its_lines(voc_mini, d2lzh,
                                                 colormap2label, capsys):
    ctx = [mx.cpu(0), mx.cpu(1)]  # two devices, faked: a batch is split
    before = weights(chapter_net(0))
    ours = train_chapter(v1, voc_mini, colormap2label, ctx)
    printed = capsys.readouterr().out
    theirs = train_chapter(d2lzh, voc_mini, colormap2label, ctx)
    assert len(ours) == len(theirs) == len(before)
    for a, b in zip(ours, theirs):
        onp.testing.assert_array_equal(a, b)
    assert any((a != b).any() for a, b in zip(ours, before))
    expected = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[:3] == ['read 3 examples', 'read 2 examples',
                         'training on [cpu(0), cpu(1)]']
    assert len(lines) == 5
    assert all(re.fullmatch(EPOCH_LINE, line) for line in lines[3:])

    def untimed(text):
        return re.sub(r'time \d+\.\d sec', 'time sec', text)
    assert untimed(printed) == untimed(expected)


def test_evaluate_accuracy_equals_d2lzh_and_a_count(voc_mini, d2lzh,
                                                    colormap2label):
    mx.random.seed(0)
    net = nn.Conv2D(21, kernel_size=3, padding=1)
    net.initialize(init.Xavier())
    test_iter = gdata.DataLoader(v1.VOCSegDataset(
        False, (128, 192), voc_mini, colormap2label), 1)
    random.seed(0)
    ours = v1.evaluate_accuracy(test_iter, net, mx.cpu())
    random.seed(0)
    theirs = d2lzh.evaluate_accuracy(test_iter, net, [mx.cpu()])
    random.seed(0)
    right = total = 0
    for X, y in test_iter:
        right += (net(X).argmax(axis=1).asnumpy() == y.asnumpy()).sum()
        total += y.size
    # both count in float32: right / total within half its spacing (6e-8)
    assert ours == theirs == pytest.approx(right / total, abs=1e-7)
    assert 0 < ours < 1


def test_bilinear_kernel_values():
    W = v1.bilinear_kernel(3, 3, 4)
    assert isinstance(W, nd.NDArray) and W.dtype == onp.float32
    assert W.shape == (3, 3, 4, 4)
    w = W.asnumpy()
    ramp = onp.array([0.25, 0.75, 0.75, 0.25])  # 1 - |x - 1.5| / 2
    for i in range(3):
        onp.testing.assert_array_equal(w[i, i], onp.outer(ramp, ramp))
    assert (w[~onp.eye(3, dtype=bool)] == 0).all()  # channel i -> i only
    odd = v1.bilinear_kernel(1, 1, 3).asnumpy()[0, 0]
    onp.testing.assert_array_equal(odd, onp.outer([.5, 1, .5], [.5, 1, .5]))


def bilinear_upsample(x, s):
    """Bilinear interpolation by `s` with pixel centres aligned (as
    OpenCV and PIL resize); NaN where a pixel has no two neighbours."""
    def weights_1d(n):
        c = (onp.arange(n * s) + 0.5) / s - 0.5  # source coordinate
        m = onp.floor(c).astype(int)
        w = onp.full((n * s, n), onp.nan)
        ok = (m >= 0) & (m + 1 < n)
        w[ok] = 0
        r = onp.flatnonzero(ok)
        w[r, m[ok]] = 1 - (c[ok] - m[ok])
        w[r, m[ok] + 1] = c[ok] - m[ok]
        return w
    return weights_1d(x.shape[0]) @ x @ weights_1d(x.shape[1]).T


@pytest.mark.parametrize('kernel, stride, padding', [(4, 2, 1),
                                                     (64, 32, 16)])
def test_bilinear_kernel_upsamples_bilinearly(kernel, stride, padding):
    x = onp.random.RandomState(0).rand(3, 4).astype('float32')
    conv_trans = nn.Conv2DTranspose(1, kernel_size=kernel, padding=padding,
                                    strides=stride)
    conv_trans.initialize(init.Constant(v1.bilinear_kernel(1, 1, kernel)))
    Y = conv_trans(nd.array(x).reshape((1, 1, 3, 4)))[0, 0].asnumpy()
    expected = bilinear_upsample(x, stride)
    inside = ~onp.isnan(expected)
    assert Y.shape == expected.shape and inside.sum() > 0
    onp.testing.assert_allclose(Y[inside], expected[inside], rtol=1e-5)


def test_corr2d_equals_d2lzh_and_the_chapter(d2lzh):
    X = nd.random.uniform(shape=(6, 7))
    K = nd.random.uniform(shape=(2, 3))
    ours = v1.corr2d(X, K)
    assert ours.shape == (5, 5)
    onp.testing.assert_array_equal(ours.asnumpy(),
                                   d2lzh.corr2d(X, K).asnumpy())
    X = nd.arange(1, 17).reshape((4, 4))
    K = nd.arange(1, 10).reshape((3, 3))
    conv = nn.Conv2D(channels=1, kernel_size=3)
    conv.initialize(init.Constant(K.reshape((1, 1, 3, 3))))
    onp.testing.assert_array_equal(
        v1.corr2d(X, K).asnumpy(),
        conv(X.reshape((1, 1, 4, 4)))[0, 0].asnumpy())  # 348 393 528 573


def test_predict_as_the_chapter_and_label2image(voc_mini, d2lzh,
                                                colormap2label, monkeypatch):
    monkeypatch.setattr(v1.fcn, '_bound', {'net': None, 'ctx': None})
    features, labels = v1.read_voc_images(voc_mini, True)
    img = image.fixed_crop(features[0], 0, 0, 96, 64)
    with pytest.raises(FCNError, match='bind_predict'):
        v1.predict(img)
    mx.random.seed(0)
    net = nn.Conv2D(21, kernel_size=3, padding=1)
    net.initialize(init.Xavier())
    # the chapter's predict, normalising with d2lzh's data set
    dataset = d2lzh.VOCSegDataset(True, (64, 96), voc_mini, colormap2label)
    X = dataset.normalize_image(img).transpose((2, 0, 1)).expand_dims(0)
    expected = nd.argmax(net(X), axis=1)[0]
    assert (v1.predict(img, net, mx.cpu()) == expected).min() == 1
    v1.bind_predict(net, [mx.cpu()])
    pred = v1.predict(img)
    assert pred.shape == (64, 96) and (pred == expected).min() == 1
    colours = v1.label2image(pred)
    assert colours.dtype == onp.uint8 and colours.shape == (64, 96, 3)
    onp.testing.assert_array_equal(colours.asnumpy(), onp.array(
        v1.VOC_COLORMAP, 'uint8')[pred.asnumpy().astype(int)])
    # indices and colours round-trip, except the void border (-> black)
    rgb = labels[0].asnumpy()
    back = v1.label2image(v1.voc_label_indices(labels[0], colormap2label))
    void = (rgb == BORDER).all(-1)
    onp.testing.assert_array_equal(back.asnumpy()[~void], rgb[~void])
    assert (back.asnumpy()[void] == 0).all() and void.any()


def test_show_images_and_set_figsize():
    plt = v1.plt
    imgs = [nd.full((4, 5, 3), i, dtype='uint8') for i in range(6)]
    with plt.rc_context():
        v1.set_figsize((4, 3))
        assert list(plt.rcParams['figure.figsize']) == [4, 3]
    axes = v1.show_images(imgs, 2, 3, scale=1)
    try:
        assert axes.shape == (2, 3)
        assert tuple(axes[0][0].figure.get_size_inches()) == (3, 2)
        for k, ax in enumerate(axes.flatten()):
            assert (ax.images[0].get_array() == k).all()
            assert not ax.xaxis.get_visible()
    finally:
        plt.close(axes[0][0].figure)


def test_import_leaves_pyplot_and_numpy_mode_alone():
    code = ('import sys\n'
            'import gluon_fcn\n'
            'import mxnet as mx\n'
            'import gluon_fcn.v1\n'
            'assert "matplotlib.pyplot" not in sys.modules\n'
            'assert not mx.util.is_np_array()\n'
            'gluon_fcn.v1.plt\n'
            'assert "matplotlib.pyplot" in sys.modules\n')
    subprocess.run([sys.executable, '-c', code], check=True)


def test_download_voc_pascal_fetches_d2lzh_url(d2lzh, tmp_path,
                                               monkeypatch):
    class Stop(Exception):
        pass

    def theirs(url, path=None, overwrite=False, sha1_hash=None, **kw):
        wanted.append((url, sha1_hash))
        raise Stop

    def ours(url, path, sha1=None):
        fetched.append((url, sha1))
        with tarfile.open(path, 'w') as tar:
            info = tarfile.TarInfo('VOCdevkit/VOC2012/ImageSets/'
                                   'Segmentation/train.txt')
            info.size = 6
            tar.addfile(info, io.BytesIO(b'img_1\n'))
        return path

    wanted, fetched = [], []
    monkeypatch.setattr(d2lzh.utils.gutils, 'download', theirs)
    with pytest.raises(Stop):
        d2lzh.download_voc_pascal(str(tmp_path))
    download = sys.modules[v1.data.download_voc.__module__]
    monkeypatch.setattr(download, 'download', ours)
    voc_dir = v1.download_voc_pascal(str(tmp_path))
    assert fetched == wanted and len(wanted) == 1
    assert voc_dir == os.path.join(str(tmp_path), 'VOCdevkit/VOC2012')
    assert os.path.isfile(os.path.join(voc_dir, 'ImageSets',
                                       'Segmentation', 'train.txt'))
