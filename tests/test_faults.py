"""Issue 16 (and 17's interrupts): every I/O fault ends in one line naming
the file and the cause; files get the mode the umask gives; SIGINT and
SIGTERM keep the last complete checkpoint and say how to continue.

Real faults where this machine allows them: a full disk is a small tmpfs
(mounting needs root), unreadable inputs and read-only folders are modes
that a subprocess without root's powers to ignore them meets (`setpriv`
drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH; as any other user the
subprocess runs as is). Elsewhere the full disk is an OSError injected at
the write helper.
"""
import contextlib
import errno
import json
import math
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading

import mxnet as mx
import numpy as onp
import pytest

from cli_output import fails, one_line
from conftest import TINY, umask
from gluon_fcn import d2l as book
from gluon_fcn.app import figures
from gluon_fcn.app.cli import main
from gluon_fcn.core import files
from gluon_fcn.core.checkpoint import load_legacy, save_legacy
from gluon_fcn.core.labels import save_label_png
from gluon_fcn.d2l.download import file_sha1
from gluon_fcn.errors import WriteError
from test_data import http_dir, make_voc_tar  # noqa: F401

CHECKPOINT = ('devices', 'json', 'params', 'states')


def modes(folder, folders=False):
    """{path relative to `folder`: permission bits} of the files it holds
    (with `folders`, of the folders)."""
    found = {}
    for root, dirs, names in os.walk(folder):
        for name in dirs if folders else names:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder)] = \
                stat.S_IMODE(os.stat(path).st_mode)
    return found


def temporaries(folder):
    return [p for p in modes(folder) if '.tmp' in os.path.basename(p)]


@pytest.fixture
def run(tiny_run):
    """The session's tiny run (conftest), written under umask 022."""
    return tiny_run


def train_args(data, out, epochs):
    return ['train', '--data', data, '--out', out, '--epochs',
            str(epochs)] + TINY


# File modes.

def test_a_run_written_under_umask_022_is_world_readable(run, tiny_voc):
    found = {**modes(run), **modes(tiny_voc)}
    assert {'fcn.params', 'config.json', 'log.txt', 'curves.png',
            'metrics.json', 'predictions.png', 'synthetic.json',
            'checkpoints/epoch-0001.params'} <= set(found)
    assert found == {p: 0o644 for p in found}
    folders = {**modes(run, True), **modes(tiny_voc, True)}
    assert {'checkpoints', 'JPEGImages'} <= set(folders)
    assert set(folders.values()) == {0o755}


def test_files_under_umask_077_are_private(run, tiny_voc, tmp_path,
                                           capsys):
    image = os.path.join(tiny_voc, 'JPEGImages', 'synth_000000.jpg')
    with umask(0o077):
        assert main(['synth', '--out', str(tmp_path / 'synth'), '--train',
                     '2', '--val', '1']) == 0
        assert main(['predict', '--run', run, '--out',
                     str(tmp_path / 'pred'), image]) == 0
        assert main(['evaluate', '--run', run, '--data', tiny_voc,
                     '--json', str(tmp_path / 'eval' / 'e.json')]) == 0
    found = modes(tmp_path)
    assert {'pred/synth_000000.png', 'pred/synth_000000_overlay.png',
            'eval/e.json', 'eval/e_iou.png', 'synth/synthetic.json',
            'synth/ImageSets/Segmentation/train.txt'} <= set(found)
    assert set(found.values()) == {0o600}
    assert set(modes(tmp_path, True).values()) == {0o700}


# Write faults: each cause, as the write helper reports it.

@pytest.mark.parametrize('code,cause', [
    (errno.ENOSPC, 'no space left on device'),
    (errno.EACCES, 'permission denied'),
    (errno.EROFS, 'read-only file system'),
    (errno.EDQUOT, 'disk quota exceeded'),
    (errno.EIO, 'input/output error (a failing disk?)')])
def test_a_failed_write_names_the_file_and_cause_and_keeps_the_old(
        tmp_path, code, cause):
    path = str(tmp_path / 'metrics.json')
    files.save_json({'old': 1}, path)
    with pytest.raises(WriteError) as caught:
        with files.atomic_path(path) as tmp:
            with open(tmp, 'w') as f:
                f.write('{"half')
            raise OSError(code, os.strerror(code))
    assert str(caught.value) == f'{cause} while writing {path}'
    assert files.load_json(path) == {'old': 1}
    assert os.listdir(tmp_path) == ['metrics.json']


def test_other_mxnet_errors_are_not_taken_for_write_faults(tmp_path):
    with pytest.raises(mx.base.MXNetError, match='shape mismatch'):
        with files.atomic_path(str(tmp_path / 'x.params')):
            raise mx.base.MXNetError('shape mismatch')
    assert os.listdir(tmp_path) == []


# A real full disk.

@pytest.fixture
def mount(tmp_path):
    """mount(folder, options): a tmpfs, unmounted after; skips the test
    where this process may not mount (not root)."""
    mounted = []

    def do(folder, options):
        os.makedirs(folder, exist_ok=True)
        proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', options,
                               'tmpfs', str(folder)], capture_output=True)
        if proc.returncode:
            pytest.skip(f'cannot mount a tmpfs here: {proc.stderr!r}')
        mounted.append(folder)
        return str(folder)

    yield do
    for folder in mounted:
        subprocess.run(['umount', '-l', str(folder)], check=True)


def fill(disk, leave=0):
    """Fill the tmpfs `disk`, then free `leave` bytes (whole pages)."""
    with open(os.path.join(disk, 'filler'), 'ab', buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(bytes(1 << 16))
        f.truncate(max(f.tell() - leave, 0))


def write_big_params(path):
    save_legacy(path, {'w': mx.nd.ones((1 << 18,))})  # 1 MB


def write_small_params(path):
    save_legacy(path, {'w': mx.nd.ones((1500,))})  # 6 kB


@pytest.mark.parametrize('write,name', [
    (write_big_params, 'a.params'),  # MXNet raises 'Write incomplete'
    (write_small_params, 'a.params'),  # MXNet's last flush fails silently
    (lambda p: files.save_json(list(range(9999)), p), 'a.json'),
    (lambda p: save_label_png(onp.random.default_rng(0).integers(
        0, 21, (300, 300)), p), 'a.png'),
    (lambda p: figures.save_curves([(1, 1.0, 0.5, 0.5)] * 99, [], 1, p),
     'c.png')])
def test_a_full_disk_in_each_writer(mount, tmp_path, write, name):
    disk = mount(tmp_path / 'disk', 'size=2m,mode=0755')
    path = os.path.join(disk, name)
    with open(path, 'w') as f:
        f.write('previous')
    fill(disk, leave=4096)
    with pytest.raises(WriteError) as caught:
        write(path)
    assert str(caught.value) == f'no space left on device while writing ' \
        f'{path}'
    assert open(path).read() == 'previous'
    assert sorted(os.listdir(disk)) == sorted([name, 'filler'])


def test_a_full_disk_while_making_synthetic_data(mount, tmp_path, capsys):
    disk = mount(tmp_path / 'disk', 'size=64k,mode=0755')
    message = fails(['synth', '--out', f'{disk}/data', '--train', '20',
                     '--val', '2'], capsys)
    assert re.fullmatch(f'--out {disk}/data: no space left on device while '
                        f'writing {disk}/'
                        r'data/(JPEGImages/synth_\d+\.jpg|SegmentationClass/'
                        r'synth_\d+\.png)', message), message
    assert not temporaries(disk)
    assert not os.path.exists(f'{disk}/data/synthetic.json')


@pytest.mark.parametrize('room,action,left', [
    (0.5, 'writing', []),  # the download does not fit
    (1.5, 'extracting', ['VOC.tar'])])  # its extraction does not
def test_a_full_disk_while_preparing_voc2012(mount, tiny_voc, http_dir,
                                             tmp_path, room, action, left):
    """A disk with room for `room` times the VOC tar."""
    root, base = http_dir
    tar = make_voc_tar(tiny_voc, str(root / 'VOC.tar'))
    size = int(os.path.getsize(tar) * room) >> 12 << 12  # whole pages
    disk = mount(tmp_path / 'disk', f'size={size},mode=0755')
    with pytest.raises(WriteError) as caught:
        book.download_voc(disk, f'{base}/VOC.tar', file_sha1(tar))
    assert str(caught.value) == \
        f'no space left on device while {action} {disk}/VOC.tar'
    assert os.listdir(disk) == left  # no partial download or folder


@pytest.fixture(params=['tmpfs', 'injected'])
def small_disk(request, mount, tmp_path, monkeypatch):
    """(folder, free()): a disk with room for the first checkpoint only,
    and a function that frees space. 'tmpfs': a real 80 MB one (a
    checkpoint is 52 MB); 'injected': ENOSPC at the helper for epoch 2."""
    folder = tmp_path / 'disk'
    if request.param == 'tmpfs':
        disk = mount(folder, 'size=80m,mode=0755')
        return disk, lambda: subprocess.run(
            ['mount', '-o', 'remount,size=300m', disk], check=True)
    create = files.create_temporary

    def full(path):
        if os.path.basename(path) == 'epoch-0002.params':
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return create(path)

    monkeypatch.setattr(files, 'create_temporary', full)
    folder.mkdir()
    return str(folder), monkeypatch.undo


def test_a_full_disk_at_a_checkpoint_keeps_the_last_and_resume_continues(
        small_disk, tiny_voc, capsys):
    disk, free = small_disk
    out = os.path.join(disk, 'run')
    message = fails(train_args(tiny_voc, out, 2), capsys)
    assert message == (
        f'no space left on device while writing {out}/checkpoints/'
        f'epoch-0002.params; {out} is kept as of epoch 1 of 2 '
        f'(checkpoints/epoch-0001.*); once that is fixed, continue with: '
        f'gluon-fcn train --out {out} --resume')
    assert sorted(os.listdir(os.path.join(out, 'checkpoints'))) == [
        f'epoch-0001.{ext}' for ext in CHECKPOINT]
    assert not temporaries(disk)
    free()
    command = shlex.split(message.split('continue with: ')[1])
    assert main(command[1:]) == 0
    assert len(open(os.path.join(out, 'log.txt')).readlines()) == 2
    assert sorted(os.listdir(os.path.join(out, 'checkpoints'))) == [
        f'epoch-000{e}.{ext}' for e in (1, 2) for ext in CHECKPOINT]
    assert load_legacy(os.path.join(out, 'fcn.params'))


# Unreadable inputs and read-only folders, met without root's powers.

RUNNER = '''
import contextlib, io, json, sys
from gluon_fcn.app.cli import main
results = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(io.StringIO()):
        results.append((main(args), err.getvalue()))
print(json.dumps(results))
'''


def run_powerless(cases, cwd):
    """[(exit status, stderr)] of `main(args)` for each of `cases`, in a
    process for which file modes hold: this user where it is not root,
    else root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH."""
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which('setpriv'):
            pytest.skip('root, and no setpriv to drop its powers')
        prefix = ['setpriv', '--bounding-set',
                  '-dac_override,-dac_read_search']
    proc = subprocess.run(prefix + [sys.executable, '-c', RUNNER,
                                    json.dumps(cases)],
                          capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return [(status, one_line(err)) for status, err in
            json.loads(proc.stdout)]


def fake_run(folder):
    """A run folder a check meets before the params are loaded."""
    os.makedirs(folder)
    with open(os.path.join(folder, 'config.json'), 'w') as f:
        f.write('{}')
    with open(os.path.join(folder, 'fcn.params'), 'wb') as f:
        f.write(b'params')
    return folder


def test_unreadable_inputs_are_named(tiny_voc, run, tmp_path):
    def data(name, path_in_it):
        folder = str(tmp_path / name)
        shutil.copytree(tiny_voc, folder)
        os.chmod(os.path.join(folder, path_in_it), 0)
        return folder, os.path.join(folder, path_in_it)

    image_data, image = data('d1', 'JPEGImages/synth_000001.jpg')
    label_data, label = data('d2', 'SegmentationClass/synth_000003.png')
    split_data, split = data('d3', 'ImageSets/Segmentation/val.txt')
    run_folder = fake_run(str(tmp_path / 'r1'))
    os.chmod(run_folder, 0)
    params_run = fake_run(str(tmp_path / 'r2'))
    params = os.path.join(params_run, 'fcn.params')
    os.chmod(params, 0)
    out = str(tmp_path / 'out')
    results = run_powerless([
        train_args(image_data, out, 1), train_args(label_data, out, 1),
        train_args(split_data, out, 1),
        ['predict', '--run', run_folder, '--out', out, image],
        ['predict', '--run', params_run, '--out', out, image],
        ['predict', '--run', run, '--out', out, image]], str(tmp_path))
    denied = 'gluon-fcn: error: permission denied while reading'
    assert results == [
        (2, [f'{denied} {image}']), (2, [f'{denied} {label}']),
        (2, [f'{denied} {split}']),
        (2, [f'gluon-fcn: error: --run {run_folder}: permission denied '
             f'while reading {run_folder}']),
        (2, [f'gluon-fcn: error: --run {params_run}: permission denied '
             f'while reading {params}']),
        (1, [f'{denied} {image}'])]  # the other images would be written
    assert not os.path.exists(out)


@pytest.mark.parametrize('field, value, message', [
    ('lr', math.nan, 'lr must be a positive finite number, got nan'),
    ('crop', [320, -480], 'crop must be two positive multiples of 32, got '
     '[320, -480]'),
    ('epochs', 0, 'epochs must be a positive integer, got 0'),
    ('seed', -1, 'seed must be an integer from 0 to 4294967295, got -1'),
])
def test_a_run_config_json_with_numbers_that_make_no_sense(
        field, value, message, run, tiny_voc, tmp_path, capsys):
    """A hand-edited config.json (issue 25): predict, evaluate and train
    --resume each stop in one line naming the file."""
    folder = str(tmp_path / 'run')
    shutil.copytree(run, folder)
    path = os.path.join(folder, 'config.json')
    with open(path) as f:
        config = json.load(f)
    with open(path, 'w') as f:
        json.dump(dict(config, **{field: value}), f)  # NaN as JSON writes it
    image = os.path.join(tiny_voc, 'JPEGImages', 'synth_000000.jpg')
    for argv in (['predict', '--run', folder, '--out', str(tmp_path / 'p'),
                  image],
                 ['evaluate', '--run', folder, '--data', tiny_voc],
                 ['train', '--resume', '--out', folder, '--data', tiny_voc]):
        assert fails(argv, capsys) == f'{path}: {message}', argv
    assert not os.path.exists(tmp_path / 'p')


def test_a_read_only_output_folder(tiny_voc, run, tmp_path):
    folder = tmp_path / 'read-only'
    folder.mkdir()
    folder.chmod(0o555)
    image = os.path.join(tiny_voc, 'JPEGImages', 'synth_000000.jpg')
    results = run_powerless([
        train_args(tiny_voc, str(folder / 'run'), 1),
        ['synth', '--out', str(folder / 'data'), '--train', '1', '--val',
         '1'],
        ['predict', '--run', run, '--out', str(folder / 'pred'), image],
        ['evaluate', '--run', run, '--data', tiny_voc, '--json',
         str(folder / 'e.json')]], str(tmp_path))
    error = 'gluon-fcn: error: permission denied while'
    assert results == [
        (2, [f'{error} creating {folder}/run']),
        (2, [f'gluon-fcn: error: --out {folder}/data: permission denied '
             f'while creating {folder}/data/JPEGImages']),
        (2, [f'{error} creating {folder}/pred']),
        (2, [f'{error} writing {folder}/e.json'])]
    assert os.listdir(folder) == []


# SIGINT and SIGTERM.

def interrupt(args, pattern, sig, cwd):
    """Start `gluon-fcn ARGS`, send `sig` once its stderr matches
    `pattern`; return (exit status, stderr)."""
    proc = subprocess.Popen([sys.executable, '-m', 'gluon_fcn.app.cli']
                            + args, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    text, seen = [], threading.Event()

    def read():
        for chunk in iter(lambda: os.read(proc.stderr.fileno(), 4096), b''):
            text.append(chunk.decode(errors='replace'))
            if re.search(pattern, ''.join(text)):
                seen.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert seen.wait(300), ''.join(text)[-2000:]
        proc.send_signal(sig)
        proc.wait(300)
    finally:
        proc.kill()
        proc.wait()
    reader.join(10)
    return proc.returncode, ''.join(text)


def last_line(err):
    return [line for line in re.split('[\r\n]', err) if line.strip()][-1]


@pytest.fixture(scope='module')
def long_epoch_voc(tmp_path_factory):
    """48 training images of 64x64: an epoch of 24 batches, so a signal
    sent once the first batch shows lands well before the epoch ends
    (`tiny_voc`'s 4 batches could end, checkpoint included, first)."""
    from gluon_fcn.core.synthetic import make_synthetic_voc
    out = str(tmp_path_factory.mktemp('long') / 'voc')
    return str(make_synthetic_voc(out, num_train=48, num_val=4, seed=0,
                                  sizes=((64, 64),), progress=False))


def test_ctrl_c_before_the_first_checkpoint_then_the_same_command(
        long_epoch_voc, tmp_path, monkeypatch):
    """Choice: the folder stays (config.json, empty checkpoints/) and the
    same command starts the run again."""
    args = train_args(long_epoch_voc, 'run', 1)
    status, err = interrupt(args, r'epoch 1/1:[^\r\n]*loss=',
                            signal.SIGINT, tmp_path)
    assert status == 130
    assert last_line(err) == (
        'gluon-fcn: interrupted by SIGINT; no checkpoint yet, nothing to '
        'keep; the same command starts the run again: '
        + shlex.join(['gluon-fcn'] + args))
    assert 'Traceback' not in err
    assert sorted(os.listdir(tmp_path / 'run')) == ['checkpoints',
                                                    'config.json']
    assert os.listdir(tmp_path / 'run' / 'checkpoints') == []
    monkeypatch.chdir(tmp_path)
    assert main(args) == 0
    assert len(open(tmp_path / 'run' / 'log.txt').readlines()) == 1


def test_sigterm_mid_training_keeps_the_last_checkpoint(tiny_voc,
                                                       tmp_path,
                                                       monkeypatch):
    status, err = interrupt(train_args(tiny_voc, 'run', 2),
                            r'epoch 2/2:[^\r\n]*loss=', signal.SIGTERM,
                            tmp_path)
    assert status == 143
    assert last_line(err) == (
        'gluon-fcn: interrupted by SIGTERM; run is kept as of epoch 1 of 2 '
        '(checkpoints/epoch-0001.*); continue with: gluon-fcn train --out '
        'run --resume')
    assert 'Traceback' not in err
    assert sorted(os.listdir(tmp_path / 'run' / 'checkpoints')) == [
        f'epoch-0001.{ext}' for ext in CHECKPOINT]
    assert not temporaries(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(['train', '--out', 'run', '--resume']) == 0
    assert len(open(tmp_path / 'run' / 'log.txt').readlines()) == 2
