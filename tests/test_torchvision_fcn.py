"""torchvision's FCN built in Gluon (`gluon_fcn.core.torchvision_fcn`):
its `.pth` files read without PyTorch, its logits and masks against
torchvision's own `fcn_resnet50` on random weights, and the commands with
`--model torchvision:NAME`. Offline and small: fcn_resnet50, 64x96
inputs. The tests that run torchvision skip where torch or torchvision
is not installed (the `compare` extra)."""
import collections
import json
import os
import pickle
import sys
import zipfile

import mxnet as mx
import numpy as onp
import pytest
from PIL import Image

from gluon_fcn.app.cli import main
from gluon_fcn.core import torchvision_fcn as tv
from gluon_fcn.core.arrays import array
from gluon_fcn.core.dataset import example_paths, read_image, read_split
from gluon_fcn.core.labels import read_label_indices
from gluon_fcn.core.pth import read_state_dict, write_state_dict
from gluon_fcn.core.zoo import load_pretrained
from gluon_fcn.d2l import RGB_MEAN, RGB_STD, VOC_CLASSES
from gluon_fcn.errors import FCNError

SIZE = (64, 96)  # (H, W): small, a multiple of 32 as --window wants


@pytest.fixture(scope='module')
def torch():
    return pytest.importorskip('torch')


@pytest.fixture(scope='module')
def segmentation(torch):
    """`torchvision.models.segmentation`, entered without torchvision's
    `__init__` (`gluon_fcn.compare.vision`)."""
    vision = pytest.importorskip('gluon_fcn.compare.vision')
    try:
        return vision.segmentation()
    except ImportError as e:
        pytest.skip(f'torchvision is not installed ({e})')


@pytest.fixture(scope='module')
def reference(segmentation, torch, tmp_path_factory):
    """torchvision's own fcn_resnet50 in eval mode, its weights random
    (BatchNorm's statistics and scales drawn too, so that no layer is the
    identity), and the `.pth` of its state dict, as a user saves one."""
    torch.manual_seed(0)
    model = segmentation.fcn_resnet50(weights=None, weights_backbone=None,
                                      num_classes=21, aux_loss=True).eval()
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key.endswith('running_mean'):
                value.normal_(0, 0.1)
            elif key.endswith('running_var') or (
                    value.dim() == 1 and key.endswith('.weight')):
                value.uniform_(0.5, 1.5)  # variances and BatchNorm scales
    path = str(tmp_path_factory.mktemp('tv') / 'random.pth')
    torch.save(model.state_dict(), path)
    return model, path


def torch_logits(torch, model, X):
    with torch.no_grad():
        return model(torch.from_numpy(X))['out'].numpy()


def normalised(img):
    """torchvision's preprocessing of an (H, W, 3) uint8 image: ToTensor
    (0-1 RGB) and Normalize(ImageNet's mean and std), batched."""
    X = (img.astype('float32') / 255 - onp.float32(RGB_MEAN)) / \
        onp.float32(RGB_STD)
    return X.transpose(2, 0, 1)[None].astype('float32')


def relative_gap(got, want):
    return onp.abs(got - want).max() / onp.abs(want).max()


def fails(args, capsys):
    """Run the CLI expecting exit 2 and one line on stderr; return it."""
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith('gluon-fcn: error')
    return err


def test_bilinear_resize_is_torch_s_interpolate(torch):
    """MXNet's BilinearResize2D 'like' with align_corners=False is
    F.interpolate(bilinear, align_corners=False), at the net's 8x and at
    odd sizes."""
    from torch.nn import functional as F
    rng = onp.random.RandomState(0)
    for (h, w), (H, W) in (((8, 12), (64, 96)), ((9, 13), (65, 99)),
                           ((3, 5), (17, 40))):
        x = rng.standard_normal((2, 3, h, w)).astype('float32')
        want = F.interpolate(torch.from_numpy(x), size=(H, W),
                             mode='bilinear', align_corners=False).numpy()
        got = mx.nd.contrib.BilinearResize2D(
            mx.nd.array(x), mx.nd.zeros((1, 1, H, W)), mode='like',
            align_corners=False).asnumpy()
        assert onp.abs(got - want).max() < 1e-5


def test_pth_reader_reads_what_torch_saves_and_torch_reads_its_writes(
        torch, tmp_path):
    """Both of torch's formats (zip; the legacy one of 2019's hub
    files), views into a shared storage (transposed, offset), several
    dtypes, a scalar; `write_state_dict`'s file is one `torch.load`
    reads back equal."""
    base = torch.randn(6, 8)
    state = collections.OrderedDict(
        a=torch.randn(3, 4), b=base.t(), c=base[2:4, 1:5],
        d=torch.arange(5), e=torch.tensor(3.5, dtype=torch.float64),
        f=torch.randn(4).half(), g=torch.tensor([True, False]),
        h=torch.zeros(0, 3))
    path = str(tmp_path / 'x.pth')
    for zipped in (True, False):
        torch.save(state, path, _use_new_zipfile_serialization=zipped)
        got = read_state_dict(path)
        assert list(got) == list(state)
        for key, value in state.items():
            assert got[key].dtype == value.numpy().dtype, key
            assert onp.array_equal(got[key], value.numpy()), key
    write_state_dict(got, path)
    back = torch.load(path, weights_only=True)
    assert list(back) == list(state)
    for key, value in state.items():
        assert torch.equal(back[key], value), key


def evil_pth(path, flag):
    """A .pth whose pickle would run `os.system('touch FLAG')`."""
    class Evil:
        def __reduce__(self):
            return os.system, (f'touch {flag}',)
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('archive/data.pkl', pickle.dumps(Evil(), 2))
    return path


def test_pth_reader_refuses_what_is_not_a_state_dict(tmp_path):
    """No PyTorch needed: a file cut short, bytes that are no .pth, a
    pickle that would run code (not run), a pickle of something else
    each give one line naming the file."""
    good = write_state_dict({'w': onp.ones((2, 3), 'float32')},
                            str(tmp_path / 'good.pth'))
    assert onp.array_equal(read_state_dict(good)['w'], onp.ones((2, 3)))
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(open(good, 'rb').read()[:-60])
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'not a weights file' * 10)
    flag = tmp_path / 'ran'
    evil = evil_pth(str(tmp_path / 'evil.pth'), flag)
    other = tmp_path / 'list.pth'
    with zipfile.ZipFile(other, 'w') as archive:
        archive.writestr('archive/data.pkl', pickle.dumps([1, 2], 2))
    past = tmp_path / 'past.pth'  # a view past its 6 numbers' storage
    with zipfile.ZipFile(good) as source, \
            zipfile.ZipFile(past, 'w') as archive:
        for name in source.namelist():
            raw = source.read(name)
            if name.endswith('data.pkl'):  # shape (2, 3) -> (2, 4)
                raw = raw.replace(b'K\x02K\x03\x86', b'K\x02K\x04\x86')
                assert b'K\x04' in raw
            archive.writestr(name, raw)
    for path in (cut, junk, evil, other, past):
        with pytest.raises(FCNError) as e:
            read_state_dict(str(path))
        assert str(path) in str(e.value) and '\n' not in str(e.value)
    assert not flag.exists()


def test_logits_and_masks_equal_torchvision_s(reference, torch,
                                              legacy_mode):
    """Gluon's net from the .pth computes torchvision's `out`: logits
    within 1e-4 of the largest, the same class at every pixel, also
    hybridized and at a size that is no multiple of 8."""
    model, path = reference
    net = load_pretrained('torchvision:fcn_resnet50', params=path)
    assert isinstance(net, tv.TorchvisionFCN)
    assert net.aux.classifier is not None  # loaded, not run
    rng = onp.random.RandomState(0)
    for shape, hybrid in (((1, 3) + SIZE, False), ((1, 3) + SIZE, True),
                          ((1, 3, 61, 83), True)):
        if hybrid:
            net.hybridize()
        X = rng.standard_normal(shape).astype('float32')
        want = torch_logits(torch, model, X)
        got = net(array(X)).asnumpy()
        assert got.shape == want.shape
        assert relative_gap(got, want) < 1e-4
        assert (got.argmax(1) == want.argmax(1)).all()


def test_the_published_files_are_torchvision_s(segmentation):
    """The hub files and URLs are those torchvision's weights name, and
    their categories VOC's 21."""
    for name, weights in (
            ('fcn_resnet50', segmentation.FCN_ResNet50_Weights),
            ('fcn_resnet101', segmentation.FCN_ResNet101_Weights)):
        published = weights.COCO_WITH_VOC_LABELS_V1
        assert tv.URL + tv.HUB_FILES[name] == published.url
        assert len(published.meta['categories']) == len(VOC_CLASSES)


@pytest.fixture
def photo(tmp_path):
    """A small PNG (lossless: torch's side decodes the same pixels)."""
    path = tmp_path / 'photo.png'
    pixels = onp.random.RandomState(1).randint(0, 256, SIZE + (3,), 'uint8')
    Image.fromarray(pixels).save(path)
    return str(path)


def test_predict_writes_torchvision_s_mask(reference, torch, photo,
                                           tmp_path, capsys, monkeypatch):
    """`predict --model torchvision:fcn_resnet50`, from --params (with
    torch not importable), from the torch hub cache ($TORCH_HOME) and
    from --model-root, writes the mask torchvision's own model gives the
    image, in VOC's names and palette."""
    model, path = reference
    want = torch_logits(torch, model, normalised(
        onp.asarray(Image.open(photo).convert('RGB')))).argmax(1)[0]
    hub, root = tmp_path / 'torch', tmp_path / 'root'
    for folder in (hub / 'hub' / 'checkpoints', root):
        os.makedirs(folder)
        os.link(path, folder / tv.HUB_FILES['fcn_resnet50'])
    monkeypatch.setenv('TORCH_HOME', str(hub))
    for k, params in enumerate((['--params', path], [],
                                ['--model-root', str(root)])):
        if k == 2:  # --model-root alone: the hub folder is not read
            os.remove(hub / 'hub' / 'checkpoints' /
                      tv.HUB_FILES['fcn_resnet50'])
        out = tmp_path / f'pred{k}'
        with monkeypatch.context() as m:
            if params:  # `import torch` raises ImportError
                m.setitem(sys.modules, 'torch', None)
            assert main(['predict', '--model', 'torchvision:fcn_resnet50',
                         '--window', '64,96', '--out', str(out), photo] +
                        params) == 0
        mask = Image.open(out / 'photo.png')
        assert onp.array_equal(onp.asarray(mask), want)
        assert mask.getpalette()[3:6] == [128, 0, 0]  # VOC's aeroplane
        line = capsys.readouterr().out.splitlines()[-1]
        found = onp.unique(want).tolist()
        assert line.endswith(', '.join(VOC_CLASSES[i] for i in found))
        assert 'output (1, 21, 64, 96)' in line


def test_evaluate_scores_torchvision_s_masks(reference, torch, tmp_path,
                                             capsys):
    """`evaluate` reports the pixel accuracy of torchvision's own masks
    of the split, under VOC's class names."""
    from gluon_fcn.core.synthetic import make_synthetic_voc
    model, path = reference
    data = make_synthetic_voc(str(tmp_path / 'data'), num_train=1,
                              num_val=2, sizes=(SIZE,), progress=False)
    correct = valid = 0
    for name in read_split(data, 'val'):
        image, label = example_paths(data, name)
        pred = torch_logits(torch, model, normalised(
            read_image(image).asnumpy())).argmax(1)[0]
        label = read_label_indices(label)
        keep = label != 255  # --labels voc: the border is ignored
        correct += int((pred == label)[keep].sum())
        valid += int(keep.sum())
    report = tmp_path / 'eval.json'
    assert main(['evaluate', '--model', 'torchvision:fcn_resnet50',
                 '--params', path, '--data', data, '--window', '64,96',
                 '--json', str(report)]) == 0
    got = json.load(open(report))
    assert list(got['per_class_iou']) == list(VOC_CLASSES)
    assert got['images'] == 2
    assert abs(got['pixel_acc'] - correct / valid) < 1e-9
    assert 'mean IoU' in capsys.readouterr().out


def test_export_reproduces_the_logits(reference, torch, tmp_path, capsys):
    """`export --format mxnet` writes files whose graph gives
    torchvision's logits; ONNX is refused in one line (MXNet's exporter
    writes align_corners=True resizes only)."""
    from gluon_fcn.fast.portable import load_mxnet
    model, path = reference
    prefix = str(tmp_path / 'tv')
    assert main(['export', '--model', 'torchvision:fcn_resnet50',
                 '--params', path, '--format', 'mxnet', '--shape',
                 '64,96', '--out', prefix]) == 0
    assert 'max relative error' in capsys.readouterr().out
    X = onp.random.RandomState(2).standard_normal((1, 3, 64, 96))
    X = X.astype('float32')
    got = load_mxnet(prefix)(mx.np.array(X)).asnumpy()
    assert relative_gap(got, torch_logits(torch, model, X)) < 1e-4
    err = fails(['export', '--model', 'torchvision:fcn_resnet50',
                 '--params', path, '--format', 'onnx', '--out',
                 str(tmp_path / 'tv.onnx')], capsys)
    assert '--format onnx' in err and '--format mxnet' in err
    assert not (tmp_path / 'tv.onnx').exists()


def gluon_pth(name, folder, initializer=None):
    """A .pth of torchvision's `name`, random weights, made without
    PyTorch (the Gluon net's `state_dict`)."""
    net = tv.build_torchvision_fcn(name, initializer=initializer)
    return write_state_dict(tv.state_dict(net), str(folder / f'{name}.pth'))


@pytest.fixture(scope='module')
def resnet50_pth(tmp_path_factory):
    return gluon_pth('fcn_resnet50', tmp_path_factory.mktemp('r50'))


@pytest.fixture(scope='module')
def resnet101_pth(tmp_path_factory):
    """fcn_resnet101's keys and shapes (zeros)."""
    return gluon_pth('fcn_resnet101', tmp_path_factory.mktemp('r101'),
                     mx.init.Zero())


def test_bad_params_is_one_line(resnet50_pth, resnet101_pth, photo,
                                tmp_path, capsys):
    """--params missing, not a .pth, of another number of classes (the
    key and both shapes named) or of the other architecture (either way:
    the key at fault named): one line, exit 2, nothing written. No
    PyTorch needed."""
    path = resnet50_pth
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'\x00' * 100)
    state = read_state_dict(path)
    state['classifier.4.weight'] = state['classifier.4.weight'][:10]
    ten = write_state_dict(state, str(tmp_path / 'ten.pth'))
    del state
    for model, params, named in (
            ('fcn_resnet50', str(tmp_path / 'none.pth'), 'no such'),
            ('fcn_resnet50', str(junk), str(junk)),
            ('fcn_resnet50', ten, 'classifier.4.weight is (10, 512, 1, 1),'
             ' torchvision:fcn_resnet50 has (21, 512, 1, 1)'),
            ('fcn_resnet50', resnet101_pth, 'backbone.layer3.6.'),
            ('fcn_resnet101', path, 'has no backbone.layer3.6.'),
            ('fcn_resnet18', path, 'torchvision:fcn_resnet101')):
        out = tmp_path / 'out'
        err = fails(['predict', '--model', f'torchvision:{model}',
                     '--params', params, '--out', str(out), photo], capsys)
        assert named in err, err
        assert not out.exists()


def test_offline_the_error_names_the_file_the_folder_and_the_url(
        photo, tmp_path, capsys, monkeypatch):
    """Without the network and the hub file: one line naming the file,
    the torch hub folder and torchvision's URL, exit 2, nothing written
    (not even the folder)."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setattr(tv, 'URL', 'http://127.0.0.1:9/')  # no one there
    out = tmp_path / 'out'
    err = fails(['predict', '--model', 'torchvision:fcn_resnet101',
                 '--out', str(out), photo], capsys)
    folder = tmp_path / 'torch' / 'hub' / 'checkpoints'
    assert f'put fcn_resnet101_coco-7ecb50ca.pth in {folder}' in err
    assert 'http://127.0.0.1:9/fcn_resnet101_coco-7ecb50ca.pth' in err
    assert not (tmp_path / 'torch').exists() and not out.exists()


def test_the_hub_file_is_fetched_once_and_checked(resnet50_pth, tmp_path,
                                                  monkeypatch):
    """Where torchvision's URL answers (here a local folder, file://):
    the file lands in the torch hub folder when its sha256 starts with
    the hash in its name, as torch hub checks, and is used from there;
    one that does not match is refused and nothing is written."""
    from gluon_fcn.d2l.download import file_sha1
    path = resnet50_pth
    served = tmp_path / 'served'
    os.makedirs(served)
    good = f'fcn_resnet50_coco-{file_sha1(path, "sha256")[:8]}.pth'
    for name in (good, 'fcn_resnet50_coco-00000000.pth'):
        os.link(path, served / name)
    monkeypatch.setattr(tv, 'URL', served.as_uri() + '/')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    folder = tmp_path / 'torch' / 'hub' / 'checkpoints'
    monkeypatch.setitem(tv.HUB_FILES, 'fcn_resnet50',
                        'fcn_resnet50_coco-00000000.pth')
    with pytest.raises(FCNError, match='00000000.pth in'):
        tv.hub_file('fcn_resnet50')
    assert not folder.exists()
    monkeypatch.setitem(tv.HUB_FILES, 'fcn_resnet50', good)
    assert tv.hub_file('fcn_resnet50') == str(folder / good)
    assert os.listdir(folder) == [good]
    os.remove(served / good)  # now from the folder, not the URL
    assert tv.hub_file('fcn_resnet50') == str(folder / good)
