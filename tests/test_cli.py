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


def test_a_run_predicts_with_the_fast_upsampler(run):
    from gluon_fcn.fast import native
    from gluon_fcn.app.loading import load_run
    from gluon_fcn.fast.upsample import QuadrantConv2DTranspose
    if not native.load():
        pytest.skip('the native operators do not build here')
    assert isinstance(load_run(run)[0].head[-1], QuadrantConv2DTranspose)


def test_train_writes_the_run_folder(run):
    names = set(os.listdir(run))
    assert {'config.json', 'log.txt', 'fcn.params', 'curves.png',
            'predictions.png', 'metrics.json', 'checkpoints'} <= names
    config = json.load(open(os.path.join(run, 'config.json')))
    assert config['crop'] == [96, 128] and config['lr'] == 0.1
    assert config['wd'] == 1e-3 and config['backbone'] == 'resnet18_v2'
    synthetic = ['aeroplane', 'bus', 'cat', 'dog', 'person']
    assert (config['data_kind'], config['synthetic_classes']) == (
        'synthetic', synthetic)
    log = open(os.path.join(run, 'log.txt')).read().splitlines()
    assert [line.split(':')[0] for line in log] == ['epoch 1', 'epoch 2']
    assert all(' (d2l labels), ' in line for line in log)  # the mIoU's
    metrics = json.load(open(os.path.join(run, 'metrics.json')))
    assert metrics['labels'] == 'd2l'
    epochs = json.load(open(os.path.join(run, 'checkpoints',
                                         'epoch-0002.json')))['epochs']
    # the run's time in training steps, and the last epoch's apart
    assert metrics['train_seconds'] == pytest.approx(
        sum(r['train_seconds'] for r in epochs))
    assert metrics['last_epoch_train_seconds'] == \
        epochs[-1]['train_seconds'] < metrics['train_seconds']
    assert {'loss', 'train_acc', 'test_acc', 'examples_per_sec',
            'devices'} <= set(metrics)
    assert metrics['devices'] == '[cpu(0), cpu(1)]'
    assert (metrics['data_kind'], metrics['synthetic_classes']) == (
        'synthetic', synthetic)
    assert 0 <= metrics['test_miou'] <= 1
    whole = metrics['val_whole_image']  # whole images, not crops
    assert whole['images'] == 12 and whole['split'] == 'val'
    assert {'pixel_acc', 'mean_acc', 'mean_iou', 'fw_iou',
            'per_class_iou'} <= set(whole)
    assert 0 <= metrics['test_acc'] <= 1 and metrics['examples_per_sec'] > 0
    assert sorted(os.listdir(os.path.join(run, 'checkpoints'))) == [
        f'epoch-000{e}.{ext}' for e in (1, 2)
        for ext in ('devices', 'json', 'params', 'states')]
    # the final parameters are the last checkpoint's, not a third copy
    assert os.path.samefile(os.path.join(run, 'fcn.params'), os.path.join(
        run, 'checkpoints', 'epoch-0002.params'))
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
    errors = [line for line in captured.err.splitlines()
              if line.startswith('gluon-fcn: error: ')]
    assert len(errors) == 1 and 'bad.jpg' in errors[0]
    assert_synthetic_note_once(captured.err, run)
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


def assert_synthetic_note_once(err, run):
    """A run trained on synthetic data says so once, in one line, with
    its classes and the ways to a real model."""
    notes = [line for line in err.splitlines()
             if line.startswith('gluon-fcn: note: ')]
    assert len(notes) == 1, err
    for words in (f'{run} was trained on synthetic data',
                  'aeroplane, bus, cat, dog, person',
                  'photos will not segment well', '--model',
                  '--data voc2012', 'Reproducing the textbook'):
        assert words in notes[0]


def test_runs_not_trained_on_synthetic_data_have_no_note(tmp_path):
    from gluon_fcn.app.trained_on import synthetic_note
    for saved in ({'data': 'voc2012', 'data_kind': 'voc2012'},
                  {'data': 'photos', 'data_kind': 'folder'},
                  {'data': 'data/voc'}):  # before data_kind was recorded
        with open(tmp_path / 'config.json', 'w') as f:
            json.dump(saved, f)
        assert synthetic_note(str(tmp_path)) is None
    with open(tmp_path / 'config.json', 'w') as f:
        json.dump({'data': 'synthetic'}, f)
    assert 'synthetic data' in synthetic_note(str(tmp_path))


def test_predict_takes_a_folder_s_images_by_name(run, synth_voc, tmp_path,
                                                capsys):
    import shutil
    photos, empty = tmp_path / 'photos', tmp_path / 'empty'
    photos.mkdir()
    empty.mkdir()
    names = read_split(synth_voc, 'val')[:2]
    for name, copy in zip(names, ('b.jpg', 'a.JPG')):
        shutil.copy(os.path.join(synth_voc, 'JPEGImages', f'{name}.jpg'),
                    photos / copy)
    (photos / 'notes.txt').write_text('not an image')
    out = tmp_path / 'masks'
    assert main(['predict', '--run', run, '--out', str(out), str(photos),
                 str(empty)]) == 1  # the empty folder failed
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith('predicting in fp32 on ')
    assert [line.split(': ')[0] for line in lines[1:]] == [
        str(photos / 'a.JPG'), str(photos / 'b.jpg')]
    assert sorted(os.listdir(out)) == ['a.png', 'a_overlay.png', 'b.png',
                                       'b_overlay.png']
    assert f'gluon-fcn: error: {empty}: a folder with no image files' in \
        captured.err
    # masks written among the images would mix with them, or replace them
    assert main(['predict', '--run', run, '--out', str(photos),
                 str(photos)]) == 2
    assert capsys.readouterr().err.endswith(
        'the folder of the images; the masks, PNGs named after them, would '
        'mix with them or replace them: give another folder\n')
    assert sorted(os.listdir(photos)) == ['a.JPG', 'b.jpg', 'notes.txt']


def test_evaluate_crops_is_the_chapter_s_seeded_accuracy(run, synth_voc,
                                                         tmp_path, capsys):
    figures = []
    for k in range(2):
        path = tmp_path / f'eval{k}.json'
        assert main(['evaluate', '--run', run, '--data', synth_voc,
                     '--crops', '--json', str(path)]) == 0
        figures.append(json.load(open(path)))
        captured = capsys.readouterr()
        assert_synthetic_note_once(captured.err, run)
        assert '(96x128 random crops, voc labels, fp32 on ' in captured.out
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


def test_checkpoints_older_than_the_newest_kept_are_removed(tmp_path):
    """--keep-checkpoints 2: the two newest complete checkpoints stay, an
    unfinished newer one is not touched, older files go (leftovers of an
    unfinished one too); 0 keeps all."""
    from gluon_fcn.app.run_folder import checkpoint_paths, prune_checkpoints
    out = str(tmp_path)
    os.makedirs(os.path.join(out, 'checkpoints'))
    for epoch in (1, 2, 3, 4, 5):
        paths = checkpoint_paths(out, epoch)
        for path in paths if epoch != 5 else paths[:2]:  # 5: unfinished
            open(path, 'w').close()
    os.remove(checkpoint_paths(out, 1)[-1])  # 1: its JSON lost
    everything = sorted(os.listdir(os.path.join(out, 'checkpoints')))
    prune_checkpoints(out, 0)
    assert sorted(os.listdir(os.path.join(out, 'checkpoints'))) == \
        everything
    prune_checkpoints(out, 2)
    left = sorted(os.listdir(os.path.join(out, 'checkpoints')))
    assert left == sorted(os.path.basename(p) for e in (3, 4, 5)
                          for p in checkpoint_paths(out, e)[
                              :2 if e == 5 else 4])
    prune_checkpoints(out, 1)
    assert {name[:10] for name in os.listdir(
        os.path.join(out, 'checkpoints'))} == {'epoch-0004', 'epoch-0005'}


def test_resume_takes_epochs_and_kept_checkpoints_from_the_line(tmp_path):
    from gluon_fcn.app.cli import build_parser, train_config
    from gluon_fcn.app.config import TrainConfig
    out = str(tmp_path)
    with open(os.path.join(out, 'config.json'), 'w') as f:
        json.dump(TrainConfig(epochs=3, lr=0.5, out=out).to_dict(), f)

    def resumed(*flags):
        argv = ['train', '--out', out, '--resume'] + list(flags)
        args = build_parser().parse_args(argv)
        args.argv = argv
        return train_config(args)
    config = resumed()
    assert (config.epochs, config.keep_checkpoints, config.lr) == (3, 2, 0.5)
    config = resumed('--epochs', '5', '--keep-checkpoints=0', '--lr', '1')
    assert (config.epochs, config.keep_checkpoints, config.lr) == (5, 0, 0.5)


@pytest.mark.parametrize('size, shown', [
    ((75, 100), 'whole, 75x100'), ((160, 224), 'whole, 160x224'),
    ((375, 500), 'top-left 160x224 of 375x500'),
    ((100, 500), 'top-left 100x224 of 100x500')])
def test_predictions_png_says_what_part_of_each_image_it_shows(size, shown):
    from gluon_fcn.app.fit import shown_part
    assert shown_part(size, (160, 224)) == shown


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
    from gluon_fcn.app.loading import load_run
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
    running, found = capsys.readouterr().out.splitlines()
    assert running.startswith('predicting in fp32 on ')
    # the classes the mask holds, by name
    assert found.split(': ')[1] == ', '.join(
        ['background', 'object'][v] for v in sorted(onp.unique(mask)))


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
    from gluon_fcn.app.loading import load_run
    from gluon_fcn.core.training import seed_everything
    from gluon_fcn.d2l import evaluate_accuracy_gpus
    net, _ = load_run(out)
    seed_everything(0)
    val = SegDataset(False, (96, 128), str(data), 'voc',
                     index_labels=True)
    expected = evaluate_accuracy_gpus(net, gluon.data.DataLoader(val, 4))
    assert json.load(open(path))['accuracy'] == pytest.approx(expected)


@pytest.mark.parametrize('flag,static_alloc', [
    ('--no-hybridize', None), ('--static-memory', True)])
def test_train_hybridizes_as_its_flags_say_with_the_same_result(
        flag, static_alloc, tiny_voc, tiny_run, tmp_path, monkeypatch):
    """--no-hybridize trains the net imperatively (never compiled),
    --static-memory compiles it with its memory planned once (the default:
    planned each step); either way one epoch ends with tiny_run's (the
    default) parameters, to float32 rounding."""
    import inspect
    import mxnet as mx
    from conftest import TINY
    from gluon_fcn.core.checkpoint import load_legacy
    compiled = []  # static_alloc of each net compiled: a whole model
    plain = mx.gluon.HybridBlock.hybridize

    def hybridize(block, *args, **kwargs):
        bound = inspect.signature(plain).bind(block, *args, **kwargs)
        bound.apply_defaults()
        if bound.arguments['active'] and \
                isinstance(block, mx.gluon.nn.HybridSequential):
            compiled.append(bound.arguments['static_alloc'])
        return plain(block, *args, **kwargs)
    monkeypatch.setattr(mx.gluon.HybridBlock, 'hybridize', hybridize)
    out = str(tmp_path / 'run')
    assert main(['train', '--data', tiny_voc, '--out', out, '--epochs', '1',
                 flag] + TINY) == 0
    assert compiled[:1] == ([static_alloc] if static_alloc else [])
    got = load_legacy(os.path.join(out, 'fcn.params'))
    expected = load_legacy(os.path.join(tiny_run, 'fcn.params'))
    assert got.keys() == expected.keys()
    for k in expected:
        e = expected[k].asnumpy()
        assert onp.abs(got[k].asnumpy() - e).max() <= \
            1e-4 * max(onp.abs(e).max(), 1e-6), k
