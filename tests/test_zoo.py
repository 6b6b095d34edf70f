"""Pretrained FCNs of gluoncv's model zoo, offline: the architectures with
random weights the tests save, tiny inputs."""
import os
import re
import warnings

import mxnet as mx
import numpy as onp
import pytest
from PIL import Image

from cli_output import fails
from gluon_fcn.app.cli import main
from gluon_fcn.app.figures import blend
from gluon_fcn.core.arrays import array, zeros
from gluon_fcn.core.checkpoint import save_params
from gluon_fcn.core.predict import predict_sliding
from gluon_fcn.core.zoo import (ZooFCN, import_gluoncv, load_pretrained,
                                zoo_architecture)

VAL = ('2007_000033', '2011_000025')  # voc-mini's val split


def save_random_weights(name, path):
    """Weights of zoo architecture `name`, random and seeded, saved as a
    user of gluoncv saves a net's."""
    mx.random.seed(0)
    fcn = zoo_architecture(name)
    with warnings.catch_warnings():  # gluoncv initialised its heads
        warnings.simplefilter('ignore')
        fcn.initialize()
    ZooFCN(fcn, name)(zeros((1, 3, 32, 32)))  # shapes of the backbone
    save_params(fcn, path)
    return path


@pytest.fixture(scope='module')
def ade_params(tmp_path_factory):
    return save_random_weights('fcn_resnet50_ade', str(
        tmp_path_factory.mktemp('zoo') / 'fcn_resnet50_ade.params'))


@pytest.fixture(scope='module')
def small_voc(voc_mini, tmp_path_factory):
    """voc-mini with every photo and label at a quarter of its size."""
    out = tmp_path_factory.mktemp('voc_small')
    for sub, resample in (('JPEGImages', Image.BILINEAR),
                          ('SegmentationClass', Image.NEAREST)):
        os.makedirs(out / sub)
        for name in os.listdir(os.path.join(voc_mini, sub)):
            img = Image.open(os.path.join(voc_mini, sub, name))
            img.resize((img.width // 4, img.height // 4), resample).save(
                out / sub / name)
    os.makedirs(out / 'ImageSets' / 'Segmentation')
    for split in ('train', 'val'):
        with open(os.path.join(voc_mini, 'ImageSets', 'Segmentation',
                               f'{split}.txt')) as f:
            (out / 'ImageSets' / 'Segmentation' / f'{split}.txt'
             ).write_text(f.read())
    return str(out)


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / 'photo.png'
    Image.new('RGB', (50, 40), (90, 120, 30)).save(path)
    return str(path)


def test_predict_lists_classes_and_writes_masks_the_image_size(
        ade_params, small_voc, tmp_path, capsys):
    """The material's printout (output shape, classes by index and name),
    masks of each image's size and titled overlays, in ADE20K's names and
    gluoncv's palette; ADE20K has no background, so all is tinted."""
    images = [os.path.join(small_voc, 'JPEGImages', f'{n}.jpg')
              for n in VAL]
    out = tmp_path / 'pred'
    assert main(['predict', '--model', 'fcn_resnet50_ade', '--params',
                 ade_params, '--window', '64,64', '--out', str(out)]
                + images) == 0
    gcv = import_gluoncv()
    names = gcv.data.ADE20KSegmentation.CLASSES
    ade_palette = gcv.utils.viz.segmentation.adepallete
    running, *printed = capsys.readouterr().out.splitlines()
    assert running.startswith('predicting in fp32 on ')
    assert len(printed) == len(images)
    for path, line in zip(images, printed):
        width, height = Image.open(path).size
        stem = str(out / os.path.basename(path)[:-4])
        mask = Image.open(stem + '.png')
        assert mask.size == (width, height)
        assert Image.open(stem + '_overlay.png').size[0] > 200  # a figure
        found = onp.unique(onp.array(mask)).tolist()
        shape, indices, listed = re.match(
            r'.*: output \((.*)\), classes \[(.*)\]: (.*)$', line).groups()
        assert shape == f'1, 150, {height}, {width}'
        assert [int(i) for i in indices.split()] == found
        assert listed == '; '.join(names[i] for i in found)
        palette = mask.getpalette()
        for k in found:  # gluoncv's ADE20K colours, its 0 being 'other'
            assert palette[3 * k:3 * k + 3] == \
                ade_palette[3 * (k + 1):3 * (k + 2)]
        img = onp.array(Image.open(path))
        colours = [tuple(palette[i:i + 3]) for i in range(0, 768, 3)]
        tinted = blend(img, onp.array(mask), colours, background=None) != img
        assert tinted.any(-1).mean() > 0.9


def test_load_pretrained_computes_gluoncv_s_predict(ade_params,
                                                    legacy_mode):
    """The net `load_pretrained` returns equals gluoncv's own `predict`
    (main head, resized to the input) and serves `predict_sliding`."""
    fcn = zoo_architecture('fcn_resnet50_ade')
    fcn.load_parameters(ade_params)
    net = load_pretrained('fcn_resnet50_ade', params=ade_params)
    X = array(onp.random.RandomState(0).standard_normal((1, 3, 64, 96))
              .astype('float32'))
    onp.testing.assert_allclose(net(X).asnumpy(),
                                fcn.predict(X).asnumpy(), rtol=1e-5,
                                atol=1e-5)
    img = onp.random.RandomState(1).randint(0, 256, (50, 70, 3), 'uint8')
    assert predict_sliding(net, array(img), window=(32, 64)).shape == \
        (150, 50, 70)
    assert net.legend.classes[0] == 'wall' and net.legend.background is None


def test_evaluate_runs_on_voc_mini(small_voc, tmp_path, capsys):
    """Whole-image figures of a VOC zoo architecture on the real files,
    reported under the zoo's class names, with the figures beside."""
    params = save_random_weights('fcn_resnet50_voc',
                                 str(tmp_path / 'voc.params'))
    path = tmp_path / 'eval' / 'eval.json'
    assert main(['evaluate', '--model', 'fcn_resnet50_voc', '--params',
                 params, '--data', small_voc, '--window', '96,128',
                 '--json', str(path)]) == 0
    import json
    got = json.load(open(path))
    assert list(got['per_class_iou']) == list(
        import_gluoncv().data.VOCSegmentation.CLASSES)
    assert got['images'] == len(VAL) and 0 <= got['mean_iou'] <= 1
    assert 'mean IoU' in capsys.readouterr().out
    for png in ('eval_iou.png', 'eval_best_worst.png'):
        assert Image.open(path.parent / png).size[0] > 200


def test_offline_the_error_names_the_file_and_the_folder(
        photo, tmp_path, capsys, monkeypatch):
    """Without the network: one line naming the weights file and where to
    put it, exit 2, and nothing written (not even the model folder)."""
    monkeypatch.setenv('MXNET_GLUON_REPO', 'http://127.0.0.1:9/')  # no one
    monkeypatch.delenv('MXNET_HOME', raising=False)
    store = import_gluoncv().model_zoo.model_store
    root, out = tmp_path / 'models', tmp_path / 'out'
    err = fails(['predict', '--model', 'fcn_resnet101_voc', '--model-root',
                 str(root), '--out', str(out), photo], capsys)
    fname = f'fcn_resnet101_voc-{store.short_hash("fcn_resnet101_voc")}'
    assert f'{fname}.params in {root}' in err
    assert not root.exists() and not out.exists()


@pytest.mark.parametrize('args,named', [
    (['--model', 'fcn_resnet18_voc'], "'fcn_resnet18_voc'"),
    (['--model', 'fcn_resnet50_voc', '--params', '{ade}'], '{ade}'),
    (['--run', 'some/run', '--params', '{ade}'], '--params'),
    (['--model', 'fcn_resnet50_voc'], '--params FILE'),  # no weights
])
def test_bad_input_is_one_line(args, named, ade_params, photo, tmp_path,
                               capsys):
    args = [a.format(ade=ade_params) for a in args]
    out = tmp_path / 'out'
    err = fails(['predict'] + args + ['--out', str(out), photo], capsys)
    assert named.format(ade=ade_params) in err
    assert not out.exists()


def test_evaluate_refuses_a_model_of_other_classes(ade_params, small_voc,
                                                   capsys):
    err = fails(['evaluate', '--model', 'fcn_resnet50_ade', '--params',
                 ade_params, '--data', small_voc], capsys)
    assert '150 classes' in err and '21' in err
