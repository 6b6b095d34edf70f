"""The command line, end to end on a small synthetic dataset."""
import json
import os
import subprocess
import sys

import numpy as onp
from mxnet import gluon
import pytest
from PIL import Image

from gluon_fcn.app.cli import main
from gluon_fcn.core.dataset import read_split
from gluon_fcn.core.labels import voc_palette

SMALL = ['--crop', '96,128', '--batch-size', '4', '--seed', '0']


@pytest.fixture(scope='module')
def run(synth_voc, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('runs') / 'run')
    assert main(['train', '--data', synth_voc, '--out', out, '--epochs', '2',
                 '--devices', 'cpu:0,cpu:1'] + SMALL) == 0
    return out


def test_train_writes_the_run_folder(run):
    from gluon_fcn.fast import native
    from gluon_fcn.app.runs import load_run
    from gluon_fcn.fast.upsample import QuadrantConv2DTranspose
    if native.load():  # the fast upsampler by default
        assert isinstance(load_run(run)[0].head[-1], QuadrantConv2DTranspose)
    names = set(os.listdir(run))
    assert {'config.json', 'log.txt', 'fcn.params', 'curves.png',
            'predictions.png', 'metrics.json', 'checkpoints'} <= names
    config = json.load(open(os.path.join(run, 'config.json')))
    assert config['crop'] == [96, 128] and config['lr'] == 0.1
    assert config['wd'] == 1e-3 and config['backbone'] == 'resnet18_v2'
    log = open(os.path.join(run, 'log.txt')).read().splitlines()
    assert [line.split(':')[0] for line in log] == ['epoch 1', 'epoch 2']
    metrics = json.load(open(os.path.join(run, 'metrics.json')))
    assert {'loss', 'train_acc', 'test_acc', 'examples_per_sec',
            'devices'} <= set(metrics)
    assert metrics['devices'] == '[cpu(0), cpu(1)]'
    assert 0 <= metrics['test_miou'] <= 1
    whole = metrics['val_whole_image']  # whole images, not crops
    assert whole['images'] == 12 and whole['split'] == 'val'
    assert {'pixel_acc', 'mean_acc', 'mean_iou', 'fw_iou',
            'per_class_iou'} <= set(whole)
    assert 0 <= metrics['test_acc'] <= 1 and metrics['examples_per_sec'] > 0
    assert sorted(os.listdir(os.path.join(run, 'checkpoints'))) == [
        f'epoch-000{e}.{ext}' for e in (1, 2)
        for ext in ('devices', 'json', 'params', 'states')]
    for png in ('curves.png', 'predictions.png'):
        assert Image.open(os.path.join(run, png)).size[0] > 200


def test_predict_writes_masks_the_size_of_each_image(run, synth_voc,
                                                     tmp_path, capsys):
    images = [os.path.join(synth_voc, 'JPEGImages', f'{i}.jpg')
              for i in read_split(synth_voc, 'val')[:2]]
    odd = tmp_path / 'odd.png'
    Image.new('RGB', (101, 37), (90, 120, 30)).save(odd)
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'\xff\xd8 truncated')
    out = tmp_path / 'pred'
    status = main(['predict', '--run', run, '--out', str(out),
                   str(bad)] + images + [str(odd)])
    assert status == 1  # one input failed; the others are written
    captured = capsys.readouterr()
    assert 'bad.jpg' in captured.err and len(captured.err.splitlines()) == 1
    for path in images + [str(odd)]:
        stem = os.path.splitext(os.path.basename(path))[0]
        mask = Image.open(out / f'{stem}.png')
        assert mask.mode == 'P' and mask.getpalette() == voc_palette()
        assert mask.size == Image.open(path).size
        assert (out / f'{stem}_overlay.png').exists()
        assert f'{path}: ' in captured.out
    assert not (out / 'bad.png').exists()
    # the overlay leaves background pixels as they are and tints the rest
    from gluon_fcn.app.figures import blend
    from gluon_fcn.core.labels import class_colours
    mask = onp.array(Image.open(out / 'odd.png'))
    original = onp.array(Image.open(odd))
    overlay = blend(original, mask, class_colours())
    assert (overlay[mask == 0] == original[mask == 0]).all()
    assert (overlay[mask != 0] != original[mask != 0]).any(axis=-1).all()
    assert Image.open(out / 'odd_overlay.png').size[0] > 101  # a figure


def test_evaluate_crops_is_the_chapter_s_seeded_accuracy(run, synth_voc,
                                                         tmp_path):
    figures = []
    for k in range(2):
        path = tmp_path / f'eval{k}.json'
        assert main(['evaluate', '--run', run, '--data', synth_voc,
                     '--crops', '--json', str(path)]) == 0
        figures.append(json.load(open(path)))
    assert figures[0] == figures[1]
    assert 0 <= figures[0]['accuracy'] <= 1 and figures[0]['split'] == 'val'


@pytest.mark.parametrize('labels,dataset', [
    ('voc', 'synthetic'), ('d2l', 'synthetic'), ('voc', 'voc-mini')])
def test_evaluate_equals_the_paper_s_metrics_of_predict_s_masks(
        run, synth_voc, tmp_path, labels, dataset, request):
    """Acceptance: whole-image figures equal those computed by the
    paper's definitions from the masks `predict` writes, on synthetic
    images and on real VOC photos of any size."""
    voc_dir = (synth_voc if dataset == 'synthetic'
               else request.getfixturevalue('voc_mini'))
    path = tmp_path / 'eval.json'
    assert main(['evaluate', '--run', run, '--data', voc_dir, '--labels',
                 labels, '--json', str(path)]) == 0
    got = json.load(open(path))
    names = read_split(voc_dir, 'val')
    images = [os.path.join(voc_dir, 'JPEGImages', f'{n}.jpg')
              for n in names]
    assert main(['predict', '--run', run, '--out', str(tmp_path / 'p')]
                + images) == 0
    n = 21
    hist = onp.zeros((n, n))
    for name in names:
        pred = onp.array(Image.open(tmp_path / 'p' / f'{name}.png'))
        label = onp.array(Image.open(os.path.join(
            voc_dir, 'SegmentationClass', f'{name}.png'))).astype(int)
        assert pred.shape == label.shape
        if labels == 'd2l':
            label[label == 255] = 0
        keep = label != 255
        onp.add.at(hist, (label[keep], pred[keep]), 1)
    tp, t, p = onp.diag(hist), hist.sum(1), hist.sum(0)
    present = t > 0
    either = (t + p) > 0
    iou = tp[either] / (t + p - tp)[either]
    assert got['images'] == len(names) and got['labels'] == labels
    assert got['pixel_acc'] == pytest.approx(tp.sum() / t.sum())
    assert got['mean_acc'] == pytest.approx((tp / onp.where(
        present, t, 1))[present].mean())
    assert got['mean_iou'] == pytest.approx(iou.mean())
    assert got['fw_iou'] == pytest.approx((t[either] * iou).sum() / t.sum())
    per_class = list(got['per_class_iou'].values())
    assert len(per_class) == n
    assert [v is None for v in per_class] == list(~either)
    assert [v for v in per_class if v is not None] == pytest.approx(iou)
    for png in ('eval_iou.png', 'eval_best_worst.png'):
        assert Image.open(tmp_path / png).size[0] > 200


def test_resume_ends_where_an_uninterrupted_run_ends(run, synth_voc,
                                                     tmp_path):
    out = str(tmp_path / 'resumed')
    common = ['train', '--data', synth_voc, '--out', out,
              '--devices', 'cpu:0,cpu:1'] + SMALL
    assert main(common + ['--epochs', '1']) == 0
    assert main(common + ['--epochs', '2', '--resume']) == 0
    def figures(run_dir):  # loss, train acc, test acc of each epoch
        log = open(os.path.join(run_dir, 'log.txt')).read().splitlines()
        return [[float(part.split()[-1]) for part in
                 line.split(': ', 1)[1].split(', ')[:3]] for line in log]

    assert len(figures(out)) == 2
    # each device's BatchNorm statistics are checkpointed, so even on two
    # devices the resumed run is bit-identical
    assert figures(out) == figures(run)
    from gluon_fcn.core.checkpoint import load_legacy
    a = load_legacy(os.path.join(out, 'fcn.params'))
    b = load_legacy(os.path.join(run, 'fcn.params'))
    assert a.keys() == b.keys()
    for k in a:
        onp.testing.assert_array_equal(a[k].asnumpy(), b[k].asnumpy(),
                                       err_msg=k)


def test_existing_run_is_not_overwritten(run, synth_voc, capsys):
    before = open(os.path.join(run, 'log.txt')).read()
    assert main(['train', '--data', synth_voc, '--out', run] + SMALL) == 2
    assert 'pass --resume' in capsys.readouterr().err
    assert open(os.path.join(run, 'log.txt')).read() == before


def test_console_script_exits_2_without_traceback(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), 'gluon-fcn')
    proc = subprocess.run([exe, 'predict', '--run', str(tmp_path), '--out',
                           str(tmp_path), 'x.jpg'], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f'gluon-fcn: error: --run {tmp_path}: '
                                   'not a run folder (no config.json)')


def test_synth_command_writes_a_voc_folder(tmp_path, capsys):
    out = tmp_path / 'synth'
    assert main(['synth', '--out', str(out), '--train', '3', '--val',
                 '2']) == 0
    assert read_split(str(out), 'train') == [f'synth_00000{i}'
                                             for i in range(3)]
    assert len(os.listdir(out / 'JPEGImages')) == 5
    assert main(['synth', '--out', str(out), '--train', '0']) == 2
    assert '--train must be a positive integer, got 0' in \
        capsys.readouterr().err


def test_head_backbone_and_layers_are_recorded_and_rebuilt(synth_voc,
                                                         tmp_path):
    out = str(tmp_path / 'r8s')
    assert main(['train', '--data', synth_voc, '--out', out, '--epochs', '1',
                 '--head', '8s', '--backbone', 'resnet18_v1',
                 '--chapter-layers'] + SMALL) == 0
    config = json.load(open(os.path.join(out, 'config.json')))
    assert (config['head'], config['backbone']) == ('8s', 'resnet18_v1')
    assert config['chapter_layers'] is True
    from gluon_fcn.core.model import SkipFCN
    from gluon_fcn.app.runs import load_run
    net, _ = load_run(out)
    assert isinstance(net, SkipFCN) and net.head == '8s'
    assert type(net.upsample) is gluon.nn.Conv2DTranspose  # the chapter's
    image = os.path.join(synth_voc, 'JPEGImages',
                         read_split(synth_voc, 'val')[0] + '.jpg')
    assert main(['predict', '--run', out, '--out', str(tmp_path / 'p'),
                 image]) == 0


def test_binary_dataset_with_its_own_class_list(tmp_path, capsys):
    """`synth --binary` writes classes.txt; train picks it up, predicts
    two classes, and evaluate reports them by name."""
    data = str(tmp_path / 'binary')
    assert main(['synth', '--out', data, '--train', '8', '--val', '4',
                 '--binary']) == 0
    assert open(os.path.join(data, 'classes.txt')).read() == \
        'background\nobject\n'
    out = str(tmp_path / 'run')
    assert main(['train', '--data', data, '--out', out, '--epochs', '1',
                 '--crop', '160,224', '--batch-size', '2',
                 '--labels', 'voc', '--flip', '--scale', '0.8,1.2']) == 0
    config = json.load(open(os.path.join(out, 'config.json')))
    assert config['classes'] == ['background', 'object']
    assert config['flip'] and config['scale'] == [0.8, 1.2]
    path = tmp_path / 'eval.json'
    assert main(['evaluate', '--run', out, '--data', data, '--json',
                 str(path)]) == 0
    got = json.load(open(path))
    assert list(got['per_class_iou']) == ['background', 'object']
    capsys.readouterr()
    image = os.path.join(data, 'JPEGImages',
                         read_split(data, 'val')[0] + '.jpg')
    assert main(['predict', '--run', out, '--out', str(tmp_path / 'p'),
                 image]) == 0
    mask = onp.array(Image.open(tmp_path / 'p' /
                                (read_split(data, 'val')[0] + '.png')))
    assert set(onp.unique(mask)) <= {0, 1}
    assert capsys.readouterr().out.split(': ')[1].strip() in (
        'background', 'background, object', 'object')


def test_single_channel_index_masks_and_classes_flag(synth_voc, tmp_path):
    """A VOC-layout folder whose masks are 'L' PNGs of class indices."""
    import shutil
    data = tmp_path / 'gray'
    shutil.copytree(synth_voc, data)
    for png in (data / 'SegmentationClass').iterdir():
        label = onp.array(Image.open(png))
        label[(label != 0) & (label != 255)] = 2  # one class: 'thing'
        Image.fromarray(label, mode='L').save(png)
    out = str(tmp_path / 'run')
    assert main(['train', '--data', str(data), '--out', out, '--epochs',
                 '1', '--classes', 'background,other,thing',
                 '--labels', 'voc'] + SMALL) == 0
    from gluon_fcn.core.dataset import SegDataset
    dataset = SegDataset(True, (96, 128), str(data), 'voc',
                            index_labels=True)
    values = set(onp.unique(onp.concatenate(
        [dataset[i][1].asnumpy().ravel() for i in range(len(dataset))])))
    assert values <= {0, 2, 255} and 2 in values
    assert json.load(open(os.path.join(out, 'config.json')))['classes'] \
        == ['background', 'other', 'thing']
    # the chapter's crop accuracy reads the same index masks
    path = tmp_path / 'crops.json'
    assert main(['evaluate', '--run', out, '--data', str(data), '--crops',
                 '--labels', 'voc', '--json', str(path)]) == 0
    from gluon_fcn.app.runs import load_run
    from gluon_fcn.core.training import seed_everything
    from gluon_fcn.d2l import evaluate_accuracy_gpus
    net, _ = load_run(out)
    seed_everything(0)
    val = SegDataset(False, (96, 128), str(data), 'voc',
                     index_labels=True)
    expected = evaluate_accuracy_gpus(net, gluon.data.DataLoader(val, 4))
    assert json.load(open(path))['accuracy'] == pytest.approx(expected)
