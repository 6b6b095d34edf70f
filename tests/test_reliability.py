"""Issue 6: bad input gets a clear error, an interrupted run resumes exactly,
downloads are safe. Every fault runs the real CLI or API on a crafted input
and checks the message, the exit status and what is left on disk."""
import filecmp
import http.server
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading

import mxnet as mx
import numpy as onp
import pytest
from PIL import Image

from cli_output import fails, without_synthetic_note
from conftest import TINY
from gluon_fcn import d2l as book
from gluon_fcn.app.cli import main
from gluon_fcn.core import dataset
from gluon_fcn.errors import FCNError
from gluon_fcn.core.files import remove_temporaries
from test_data import http_dir, make_voc_tar, serve  # noqa: F401

@pytest.fixture
def lenient_pil():
    """PIL as gluoncv.data leaves it: truncated files load unless the
    check says otherwise."""
    import gluoncv.data  # noqa: F401  (sets LOAD_TRUNCATED_IMAGES)
    from PIL import ImageFile
    assert ImageFile.LOAD_TRUNCATED_IMAGES


@pytest.fixture(scope='module')
def reference(synth_voc, tmp_path_factory):
    """A run never interrupted: 3 epochs of 12 batches on one CPU, every
    epoch's checkpoint kept (the tests start from epoch 1's)."""
    out = str(tmp_path_factory.mktemp('reference') / 'run')
    assert main(['train', '--data', synth_voc, '--out', out, '--epochs',
                 '3', '--keep-checkpoints', '0'] + TINY) == 0
    return out


# Dataset faults: each damages a copy of the synthetic data in one way.

def split_file(d, split):
    return os.path.join(d, 'ImageSets', 'Segmentation', f'{split}.txt')


def image_file(d, name):
    return os.path.join(d, 'JPEGImages', f'{name}.jpg')


def label_file(d, name):
    return os.path.join(d, 'SegmentationClass', f'{name}.png')


def cut_in_half(path):
    with open(path, 'rb') as f:
        content = f.read()
    with open(path, 'wb') as f:
        f.write(content[:len(content) // 2])


def no_split_file(d, name):
    os.remove(split_file(d, 'val'))
    return (f"{split_file(d, 'val')}: split file not found (is {d} a "
            'VOC-layout folder?)')


def no_image(d, name):
    with open(split_file(d, 'train'), 'a') as f:
        f.write('ghost\n')
    return (f"{image_file(d, 'ghost')}: no such file, but the train split "
            'lists ghost (add the file, or remove the line from train.txt)')


def no_label(d, name):
    os.remove(label_file(d, name))
    return (f'{label_file(d, name)}: no such file, but the train split '
            f'lists {name} (add the file, or remove the line from '
            'train.txt)')


def empty_split(d, name):
    open(split_file(d, 'val'), 'w').close()
    return f'{d}: the val split lists no images'


def undecodable(path, what='image'):
    return f'{path}: cannot decode {what} (corrupt or truncated?)'


def corrupt_image(d, name):
    with open(image_file(d, name), 'wb') as f:
        f.write(b'GIF89a, not really')
    return undecodable(image_file(d, name))


def truncated_image(d, name):
    cut_in_half(image_file(d, name))
    return undecodable(image_file(d, name))


def truncated_label(d, name):
    cut_in_half(label_file(d, name))
    return undecodable(label_file(d, name), 'label')


def label_of_other_size(d, name):
    label = Image.open(label_file(d, name))
    h, w = label.size[1], label.size[0]
    label.resize((w // 2, h)).save(label_file(d, name))
    return (f'{label_file(d, name)}: the label is {h}x{w // 2} but its image '
            f"is {h}x{w} (height x width): save the label at its image's "
            'size (nearest-neighbour resampling keeps its values)')


def label_not_a_class(d, name):
    label = Image.open(label_file(d, name))
    values = onp.array(label)
    values[:4, :4] = 30
    wrong = Image.fromarray(values, mode='P')
    wrong.putpalette(label.getpalette())
    wrong.save(label_file(d, name))
    return (f'{label_file(d, name)}: label values [30] are not classes '
            "(0..20, or 255 for void): list every class in the data's "
            'classes.txt, or mark those pixels 255')


@pytest.mark.parametrize('damage', [
    no_split_file, no_image, no_label, empty_split, corrupt_image,
    truncated_image, truncated_label, label_of_other_size,
    label_not_a_class])
def test_dataset_faults_are_found_before_training(damage, synth_voc,
                                                  tmp_path, capsys,
                                                  lenient_pil):
    d = str(tmp_path / 'data')
    shutil.copytree(synth_voc, d)
    message = damage(d, dataset.read_split(d, 'train')[0])
    out = str(tmp_path / 'run')
    assert fails(['train', '--data', d, '--out', out, '--labels', 'voc']
                 + TINY, capsys) == message
    assert not os.path.exists(out)  # nothing trained, nothing to clear


@pytest.mark.parametrize('damage', [
    no_image, no_label, corrupt_image, truncated_image, truncated_label,
    label_of_other_size, label_not_a_class])
def test_dataset_faults_are_found_before_evaluating(damage, reference,
                                                    synth_voc, tmp_path,
                                                    capsys, lenient_pil):
    """The split evaluate scores is checked as train checks it (a label
    smaller than its image ended in numpy's IndexError)."""
    d = str(tmp_path / 'data')
    shutil.copytree(synth_voc, d)
    message = damage(d, dataset.read_split(d, 'train')[0])
    assert fails(['evaluate', '--run', reference, '--data', d, '--split',
                  'train'], capsys) == message


@pytest.mark.parametrize('index_labels', [False, True])
def test_the_package_s_dataset_refuses_a_label_of_other_size(
        index_labels, synth_voc, tmp_path):
    """SegDataset, d2l's VOCSegDataset as the package uses it, read the
    pairs apart (the book's own classes keep the book's behaviour)."""
    d = str(tmp_path / 'data')
    shutil.copytree(synth_voc, d)
    message = label_of_other_size(d, dataset.read_split(d, 'train')[3])
    with pytest.raises(FCNError) as e:
        dataset.SegDataset(True, (64, 64), d, index_labels=index_labels)
    assert str(e.value) == message


def test_no_image_as_large_as_the_crop(synth_voc, tmp_path, capsys):
    out = str(tmp_path / 'run')
    assert fails(['train', '--data', synth_voc, '--out', out, '--crop',
                  '512,640'], capsys) == (
        f'{synth_voc}: no train image is as large as the crop 512x640 '
        '(largest: 160x224)')
    assert not os.path.exists(out)


def test_label_values_beyond_the_classes_of_an_index_dataset(
        synth_voc, tmp_path, capsys):
    d = str(tmp_path / 'data')
    shutil.copytree(synth_voc, d)
    with open(os.path.join(d, 'classes.txt'), 'w') as f:
        f.write('background\nthing\n')  # the labels hold up to 20
    message = fails(['train', '--data', d, '--out', str(tmp_path / 'run'),
                     '--labels', 'd2l'] + TINY, capsys)
    assert re.fullmatch(r'.+\.png: label values \[\d.*\] are not classes '
                        r'\(0\.\.1, or 255 for void\): .+', message)


# Flag and run-folder faults.

def write_run(folder, params=b'not an NDArray file', config=None):
    """A run folder whose fcn.params (and config.json) are given."""
    from gluon_fcn.app.config import TrainConfig
    os.makedirs(folder)
    config = config or json.dumps(TrainConfig(
        classes=tuple(book.VOC_CLASSES)).to_dict())
    with open(os.path.join(folder, 'config.json'), 'w') as f:
        f.write(config)
    with open(os.path.join(folder, 'fcn.params'), 'wb') as f:
        f.write(params)
    return folder


def test_crop_that_is_not_a_multiple_of_32_says_why(tmp_path, capsys):
    assert fails(['train', '--crop', '320,100', '--out',
                  str(tmp_path / 'r')], capsys) == (
        '--crop 320,100: both sides must be positive multiples of 32, '
        'since the FCN downsamples by 32 and upsamples by 32')


def test_run_with_an_unreadable_params_file(tmp_path, capsys):
    run = write_run(str(tmp_path / 'run'))
    params = os.path.join(run, 'fcn.params')
    assert fails(['predict', '--run', run, '--out', str(tmp_path / 'p'),
                  'x.jpg'], capsys) == f'--run {run}: cannot load {params}'


def test_run_with_a_damaged_config(tmp_path, capsys):
    run = write_run(str(tmp_path / 'run'), config='{"crop": [32,')
    message = fails(['predict', '--run', run, '--out', str(tmp_path / 'p'),
                     'x.jpg'], capsys)
    assert message.startswith(os.path.join(run, 'config.json') +
                              ': cannot read it as JSON')


def test_resume_of_a_folder_that_is_not_a_run(synth_voc, tmp_path, capsys):
    out = tmp_path / 'notes'
    out.mkdir()
    (out / 'a.txt').write_text('mine')
    assert fails(['train', '--data', synth_voc, '--out', str(out),
                  '--resume'] + TINY, capsys) == (
        f'--resume: {out} is not a run (no config.json)')
    assert os.listdir(out) == ['a.txt']


# Prediction inputs of every kind.

def odd_images(folder):
    """Images in modes other than 8-bit RGB, and one of a single pixel."""
    rng = onp.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 56, 3), onp.uint8))
    deep = (rng.integers(0, 65536, (40, 56))).astype(onp.uint16)
    images = {'grey.png': rgb.convert('L'), 'rgba.png': rgb.convert('RGBA'),
              'palette.png': rgb.convert('P'), 'cmyk.jpg': rgb.convert('CMYK'),
              'deep.png': Image.fromarray(deep), 'anim.gif': rgb,
              'pixel.png': Image.new('RGB', (1, 1), (200, 10, 10))}
    paths = []
    for name, img in images.items():
        paths.append(os.path.join(folder, name))
        img.save(paths[-1])
    assert Image.open(os.path.join(folder, 'deep.png')).mode == 'I;16'
    return paths


def test_odd_images_are_predicted_and_bad_ones_named(reference, synth_voc,
                                                     tmp_path, capsys,
                                                     lenient_pil):
    paths = odd_images(str(tmp_path))
    cut = str(tmp_path / 'cut.jpg')
    shutil.copy(image_file(synth_voc, dataset.read_split(synth_voc, 'val')[0]),
                cut)
    cut_in_half(cut)
    text = tmp_path / 'notes.jpg'
    text.write_text('not an image')
    out = tmp_path / 'pred'
    capsys.readouterr()
    assert main(['predict', '--run', reference, '--out', str(out), cut]
                + paths + [str(text)]) == 1  # something failed
    err = without_synthetic_note(capsys.readouterr().err.splitlines())
    assert err == [f'gluon-fcn: error: {undecodable(path)}'
                   for path in (cut, str(text))]
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        assert Image.open(out / f'{stem}.png').size == Image.open(path).size
        assert (out / f'{stem}_overlay.png').exists()
    assert sorted(os.listdir(out)) == sorted(
        f'{os.path.splitext(os.path.basename(p))[0]}{end}.png'
        for p in paths for end in ('', '_overlay'))


def test_16_bit_grey_is_scaled_to_8_bits(tmp_path):
    deep = onp.arange(0, 65536, 256, dtype=onp.uint16).reshape(16, 16)
    Image.fromarray(deep).save(tmp_path / 'deep.png')
    img = dataset.read_image(str(tmp_path / 'deep.png')).asnumpy()
    assert img.shape == (16, 16, 3)
    assert (img == (deep >> 8)[:, :, None]).all()
    Image.fromarray(deep).convert('I').save(tmp_path / 'deep.tif')
    assert (dataset.pil_rgb(str(tmp_path / 'deep.tif')) == img).all()


# Nothing lost.

def figures(run_dir):
    """Each epoch's line of log.txt without its throughput."""
    with open(os.path.join(run_dir, 'log.txt')) as f:
        return [line.rsplit(', ', 1)[0] for line in f]


def same_params(a, b):
    from gluon_fcn.core.checkpoint import load_legacy
    a, b = load_legacy(a), load_legacy(b)
    return a.keys() == b.keys() and all(
        (a[k].asnumpy() == b[k].asnumpy()).all() for k in a)


def wait_for(proc, pattern, timeout=300):
    """Read `proc`'s stderr until `pattern` appears in it."""
    found, text = threading.Event(), []

    def read():
        for chunk in iter(lambda: os.read(proc.stderr.fileno(), 4096), b''):
            text.append(chunk.decode(errors='replace'))
            if re.search(pattern, ''.join(text)):
                found.set()
    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), ''.join(text)[-2000:]


def test_run_killed_mid_epoch_resumes_bit_identical(reference, synth_voc,
                                                    tmp_path):
    """Acceptance: SIGKILL during the second epoch, then train --resume,
    ends with the parameters, log and checkpoints of a run never killed.
    """
    out = str(tmp_path / 'run')
    proc = subprocess.Popen(
        [sys.executable, '-m', 'gluon_fcn.app.cli', 'train', '--data',
         synth_voc, '--out', out, '--epochs', '3'] + TINY,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(proc, r'epoch 2/3:[^\r\n]*loss=')  # a batch of epoch 2 done
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    checkpoints = os.path.join(out, 'checkpoints')
    assert proc.returncode == -signal.SIGKILL
    assert os.path.exists(os.path.join(checkpoints, 'epoch-0001.json'))
    assert not os.path.exists(os.path.join(checkpoints, 'epoch-0002.json'))
    assert not os.path.exists(os.path.join(out, 'fcn.params'))
    assert len(figures(out)) == 1
    assert main(['train', '--out', out, '--resume']) == 0
    assert same_params(os.path.join(out, 'fcn.params'),
                       os.path.join(reference, 'fcn.params'))
    assert figures(out) == figures(reference)
    # the newest two epochs' checkpoints are kept (the default), as the
    # uninterrupted run wrote them
    kept = sorted(os.listdir(checkpoints))
    assert kept == [f'epoch-000{e}.{ext}' for e in (2, 3) for ext in
                    ('devices', 'json', 'params', 'states')]
    for name in kept:
        if name.endswith('.json'):  # it holds the epochs' timings
            continue
        assert filecmp.cmp(os.path.join(checkpoints, name), os.path.join(
            reference, 'checkpoints', name), shallow=False), name


def killed_after(reference, out, epoch=1):
    """A copy of the reference run as a kill in epoch `epoch + 1` leaves
    it (every epoch's checkpoint kept)."""
    shutil.copytree(reference, out)
    for name in os.listdir(out):
        if name not in ('config.json', 'log.txt', 'checkpoints'):
            os.remove(os.path.join(out, name))
    checkpoints = os.path.join(out, 'checkpoints')
    for name in os.listdir(checkpoints):
        if int(name[len('epoch-'):len('epoch-0000')]) > epoch:
            os.remove(os.path.join(checkpoints, name))
    return out


def test_resume_from_a_damaged_checkpoint(reference, tmp_path, capsys):
    out = killed_after(reference, str(tmp_path / 'run'))
    params = os.path.join(out, 'checkpoints', 'epoch-0001.params')
    cut_in_half(params)
    states = params.replace('.params', '.states')
    assert fails(['train', '--out', out, '--resume'], capsys) == (
        f'--resume: cannot load {params} and {states}')



# One writer a run folder (issue 25): a lock on FOLDER/.lock.

@pytest.fixture
def held(tmp_path):
    """Lock a folder as a training process would: flock on its .lock with
    this process's id in it; yield a function that locks a given folder."""
    import fcntl
    files = []

    def hold(folder, name='.lock'):
        os.makedirs(folder, exist_ok=True)
        f = open(os.path.join(folder, name), 'w')
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write(f'{os.getpid()}\n')
        f.flush()
        files.append(f)
        return os.path.join(folder, name)
    yield hold
    for f in files:
        f.close()


def in_use(folder, lock, flag='--out', kind='folder'):
    return (f'{flag} {folder}: in use by process {os.getpid()}, which '
            f'holds {lock}; wait for it to finish or stop it, or give '
            f'another {kind}')


def dead_pid():
    """The id of a process that has ended."""
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def test_a_second_train_into_a_locked_folder_is_refused(synth_voc,
                                                        tmp_path, held):
    out = str(tmp_path / 'run')
    lock = held(out)
    proc = subprocess.run(
        [sys.executable, '-m', 'gluon_fcn.app.cli', 'train', '--data',
         synth_voc, '--out', out, '--epochs', '1', '--lr', '0.5'] + TINY,
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f'gluon-fcn: error: {in_use(out, lock)}']
    assert os.listdir(out) == ['.lock']  # nothing written beside it


def test_resume_of_a_folder_being_trained_is_refused(reference, tmp_path,
                                                     held, capsys):
    out = killed_after(reference, str(tmp_path / 'run'))
    before = sorted(os.listdir(os.path.join(out, 'checkpoints')))
    lock = held(out)
    assert fails(['train', '--out', out, '--resume'], capsys) == \
        in_use(out, lock)
    assert sorted(os.listdir(os.path.join(out, 'checkpoints'))) == before


def test_predict_into_a_folder_in_use_is_refused(reference, synth_voc,
                                                 tmp_path, held, capsys):
    out = str(tmp_path / 'pred')
    lock = held(out)
    image = image_file(synth_voc, dataset.read_split(synth_voc, 'val')[0])
    assert fails(['predict', '--run', reference, '--out', out, image],
                 capsys) == in_use(out, lock)
    assert os.listdir(out) == ['.lock']


def test_overwrite_clears_the_run_it_holds_the_lock_of(reference,
                                                       synth_voc, tmp_path):
    out = str(tmp_path / 'run')
    shutil.copytree(reference, out)
    assert main(['train', '--data', synth_voc, '--out', out, '--epochs',
                 '1', '--overwrite'] + TINY) == 0
    assert sorted(os.listdir(os.path.join(out, 'checkpoints'))) == [
        f'epoch-0001.{ext}' for ext in ('devices', 'json', 'params',
                                        'states')]
    assert '.lock' not in os.listdir(out)

def test_evaluate_into_a_json_file_in_use_is_refused(reference, synth_voc,
                                                     tmp_path, held, capsys):
    path = str(tmp_path / 'e.json')
    lock = held(str(tmp_path), '.e.json.lock')
    assert fails(['evaluate', '--run', reference, '--data', synth_voc,
                  '--json', path], capsys) == in_use(path, lock, '--json',
                                                     'file')
    assert os.listdir(tmp_path) == ['.e.json.lock']


def test_a_folder_left_locked_by_a_dead_process_is_taken_over(
        reference, synth_voc, tmp_path, capsys):
    out = tmp_path / 'pred'
    out.mkdir()
    pid = dead_pid()
    (out / '.lock').write_text(f'{pid}\n')
    image = image_file(synth_voc, dataset.read_split(synth_voc, 'val')[0])
    capsys.readouterr()
    assert main(['predict', '--run', reference, '--out', str(out),
                 image]) == 0
    err = capsys.readouterr().err
    assert f'gluon-fcn: note: --out {out} was left locked by process ' \
        f'{pid}, which is gone; taking it over' in err.splitlines()
    stem = os.path.splitext(os.path.basename(image))[0]
    assert sorted(os.listdir(out)) == [f'{stem}.png', f'{stem}_overlay.png']


def test_resume_takes_over_a_run_left_by_a_killed_process(reference,
                                                           tmp_path, capsys):
    out = killed_after(reference, str(tmp_path / 'run'))
    pid = dead_pid()
    with open(os.path.join(out, '.lock'), 'w') as f:
        f.write(f'{pid}\n')
    capsys.readouterr()
    assert main(['train', '--out', out, '--resume']) == 0
    assert f'was left locked by process {pid}, which is gone' in \
        capsys.readouterr().err
    assert same_params(os.path.join(out, 'fcn.params'),
                       os.path.join(reference, 'fcn.params'))
    assert not os.path.exists(os.path.join(out, '.lock'))
    assert not os.path.exists(os.path.join(reference, '.lock'))


def test_resume_passes_over_a_cut_newest_checkpoint(reference, tmp_path,
                                                    capsys):
    """A newest checkpoint cut short (epoch 2's params) is passed over
    with a note; the run resumes from epoch 1's and ends as the reference
    run ended."""
    out = killed_after(reference, str(tmp_path / 'run'), 2)
    params = os.path.join(out, 'checkpoints', 'epoch-0002.params')
    cut_in_half(params)
    states = params.replace('.params', '.states')
    capsys.readouterr()
    assert main(['train', '--out', out, '--resume', '--keep-checkpoints',
                 '0']) == 0
    assert (f'gluon-fcn: note: --resume: cannot load {params} and {states};'
            ' resuming from epoch 1, the newest checkpoint that loads') in \
        capsys.readouterr().err.splitlines()
    assert same_params(os.path.join(out, 'fcn.params'),
                       os.path.join(reference, 'fcn.params'))
    assert figures(out) == figures(reference)
    assert filecmp.cmp(params, os.path.join(reference, 'checkpoints',
                                            'epoch-0002.params'),
                       shallow=False)

def test_non_finite_loss_stops_and_keeps_the_checkpoints(reference,
                                                         tmp_path, capsys):
    """Epoch 1 as the reference trained it, then epoch 2 with lr 1e30 (set
    in the optimizer the checkpoint restores)."""
    out = killed_after(reference, str(tmp_path / 'run'))
    checkpoints = os.path.join(out, 'checkpoints')
    states = os.path.join(checkpoints, 'epoch-0001.states')
    with open(states, 'rb') as f:
        updater_states, optimizer = pickle.load(f)
    optimizer.set_learning_rate(1e30)
    with open(states, 'wb') as f:
        pickle.dump((updater_states, optimizer), f)
    message = fails(['train', '--out', out, '--resume'], capsys)
    assert re.fullmatch(r'epoch 2, batch \d+: the loss is (nan|inf); '
                        'training stopped, the checkpoints of earlier '
                        r'epochs are kept \(a lower --lr may help\)',
                        message), message
    assert sorted(os.listdir(checkpoints)) == [
        f'epoch-0001.{ext}' for ext in ('devices', 'json', 'params',
                                        'states')]
    assert same_params(os.path.join(checkpoints, 'epoch-0001.params'),
                       os.path.join(reference, 'checkpoints',
                                    'epoch-0001.params'))
    assert not os.path.exists(os.path.join(out, 'fcn.params'))
    assert len(figures(out)) == 1


def test_a_crash_inside_an_atomic_write_leaves_the_old_file(tmp_path):
    """A process killed mid-write (os._exit: no clean-up) leaves the
    previous complete file under the name."""
    path = tmp_path / 'log.txt'
    path.write_text('complete\n')
    code = ('import os\n'
            'from gluon_fcn.core.files import atomic_path\n'
            f'with atomic_path({str(path)!r}) as tmp:\n'
            '    open(tmp, "w").write("half")\n'
            '    os._exit(9)\n')
    proc = subprocess.run([sys.executable, '-c', code])
    assert proc.returncode == 9
    assert path.read_text() == 'complete\n'
    assert len(os.listdir(tmp_path)) == 2  # and the half-written temporary
    remove_temporaries(str(tmp_path))  # as train --resume does
    assert os.listdir(tmp_path) == ['log.txt']


# Safe downloads and extraction.

class CutShort(http.server.SimpleHTTPRequestHandler):
    """Sends the full Content-Length, then only 100 bytes."""

    def copyfile(self, source, outputfile):
        outputfile.write(source.read(100))


@pytest.mark.parametrize('with_sha1', [True, False])
def test_download_cut_short_leaves_nothing(synth_voc, tmp_path, with_sha1):
    www = tmp_path / 'www'
    www.mkdir()
    tar = make_voc_tar(synth_voc, str(www / 'VOC.tar'))
    sha1 = book.download.file_sha1(tar) if with_sha1 else None
    data_dir = tmp_path / 'data'
    with serve(www, CutShort) as base:
        with pytest.raises(FCNError, match=f'cannot download {base}/VOC.tar'):
            book.download_voc(str(data_dir), f'{base}/VOC.tar', sha1)
    assert os.listdir(data_dir) == []


@pytest.mark.parametrize('name,kind,target', [
    ('/tmp/gluon-fcn-absolute.txt', tarfile.REGTYPE, ''),
    ('VOCdevkit/VOC2012/up', tarfile.SYMTYPE, '../../..'),
    ('VOCdevkit/VOC2012/passwd', tarfile.SYMTYPE, '/etc/passwd'),
    ('VOCdevkit/VOC2012/hard', tarfile.LNKTYPE, '../outside.txt'),
    ('VOCdevkit/VOC2012/fifo', tarfile.FIFOTYPE, '')])
def test_tar_members_that_escape_are_refused(synth_voc, http_dir, tmp_path,
                                             name, kind, target):
    root, base = http_dir
    tar = make_voc_tar(synth_voc, str(root / 'VOC.tar'))
    with tarfile.open(tar, 'a') as archive:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        archive.addfile(info)
    data_dir = tmp_path / 'data'
    with pytest.raises(FCNError, match=re.escape(f'member {name!r}')):
        book.download_voc(str(data_dir), f'{base}/VOC.tar',
                          book.download.file_sha1(tar))
    assert sorted(os.listdir(data_dir)) == ['VOC.tar']  # no half folder
    assert not os.path.exists('/tmp/gluon-fcn-absolute.txt')
