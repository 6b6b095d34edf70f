"""Graph files (MXNet's PREFIX-symbol.json + PREFIX-0000.params) and the
run's int8 cache go through the one write helper: a failure names the
file, keeps what was there and leaves no temporary; old calibrations are
removed through the one removal helper."""
import errno
import os
import shutil

import mxnet as mx
import pytest
from mxnet.gluon import nn

from gluon_fcn.app import loading
from gluon_fcn.core import checkpoint, files
from gluon_fcn.core.arrays import zeros
from gluon_fcn.core.model import build_fcn
from gluon_fcn.errors import WriteError
from gluon_fcn.fast import precision


def tiny_block(seed):
    mx.random.seed(seed)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(2, 3, padding=1, in_channels=3))
    net.initialize()
    net.hybridize()
    net(zeros((1, 3, 8, 8)))
    return net


def fail_on(name, monkeypatch):
    """Make the copy into a file whose name ends in `name` meet a full
    disk, as `shutil.copyfile` would."""
    real = shutil.copyfile

    def copyfile(src, dst, **kwargs):
        if src.endswith(name):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, **kwargs)
    monkeypatch.setattr(checkpoint.shutil, 'copyfile', copyfile)


def test_export_graph_writes_a_pair_that_loads(tmp_path, legacy_mode):
    net = tiny_block(0)
    prefix = str(tmp_path / 'g' / 'net')
    files = checkpoint.export_graph(net, prefix)
    assert files == [prefix + '-symbol.json', prefix + '-0000.params']
    assert sorted(os.listdir(tmp_path / 'g')) == ['net-0000.params',
                                                 'net-symbol.json']
    x = mx.nd.random.uniform(shape=(2, 3, 8, 8))
    got = precision.load_graph(prefix)(x).asnumpy()
    assert abs(got - net(x).asnumpy()).max() < 1e-6


@pytest.mark.parametrize('failing', ['-0000.params', '-symbol.json'])
def test_a_failed_graph_write_keeps_the_old_file_and_no_temporary(
        tmp_path, monkeypatch, failing, legacy_mode):
    prefix = str(tmp_path / 'net')
    checkpoint.export_graph(tiny_block(0), prefix)
    before = {f: open(prefix + f, 'rb').read()
              for f in checkpoint.GRAPH_FILES}
    fail_on(failing, monkeypatch)
    with pytest.raises(WriteError) as caught:
        checkpoint.export_graph(tiny_block(1), prefix)
    assert str(caught.value) == \
        f'no space left on device while writing {prefix}{failing}'
    assert open(prefix + failing, 'rb').read() == before[failing]
    assert sorted(os.listdir(tmp_path)) == ['net-0000.params',
                                            'net-symbol.json']


def test_the_int8_cache_is_written_atomically(tmp_path, monkeypatch):
    # the int8 net as calibration would give it, without calibrating: the
    # float32 body's graph (what the cache holds is any exported graph)
    monkeypatch.setattr(precision, 'int8_body',
                        lambda body, head, X, calib: precision.fuse(
                            precision.legacy_graph(body, X), X))
    net = build_fcn(3, pretrained_backbone=False)
    X = zeros((1, 3, 64, 64))
    prefix = str(tmp_path / 'int8' / 'fcn-key')
    calib = mx.np.zeros((2, 3, 64, 64)).asnumpy()
    fail_on('-0000.params', monkeypatch)
    with pytest.raises(WriteError, match=r'fcn-key-0000\.params$'):
        precision.inference_net(net, X, 'int8', calib, prefix)
    # no temporary, and no pair that looks complete
    assert os.listdir(tmp_path / 'int8') in ([], ['fcn-key-symbol.json'])
    assert precision.load_graph(prefix) is None
    monkeypatch.undo()
    monkeypatch.setattr(precision, 'int8_body',
                        lambda body, head, X, calib: precision.fuse(
                            precision.legacy_graph(body, X), X))
    first = precision.inference_net(net, X, 'int8', calib, prefix)
    assert sorted(os.listdir(tmp_path / 'int8')) == [
        'fcn-key-0000.params', 'fcn-key-symbol.json']
    again = precision.inference_net(net, X, 'int8', None, prefix)  # loads
    x = mx.np.random.uniform(size=(1, 3, 64, 64))
    assert abs(again(x) - first(x)).max() < 1e-5


def fake_run(folder):
    os.makedirs(os.path.join(folder, 'int8'))
    with open(os.path.join(folder, 'fcn.params'), 'wb') as f:
        f.write(b'params')
    return folder


def test_int8_cache_removes_other_calibrations_only(tmp_path):
    run = fake_run(str(tmp_path / 'run'))
    prefix = loading.int8_cache(run)
    for name in ('fcn-old-symbol.json', 'fcn-old-0000.params',
                 os.path.basename(prefix) + '-symbol.json'):
        open(os.path.join(run, 'int8', name), 'w').close()
    assert loading.int8_cache(run) == prefix
    assert os.listdir(os.path.join(run, 'int8')) == [
        os.path.basename(prefix) + '-symbol.json']


def test_int8_cache_names_an_old_calibration_it_cannot_remove(
        tmp_path, monkeypatch):
    run = fake_run(str(tmp_path / 'run'))
    old = os.path.join(run, 'int8', 'fcn-old-0000.params')
    open(old, 'w').close()

    def refuse(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
    monkeypatch.setattr(os, 'remove', refuse)
    with pytest.raises(WriteError) as caught:
        loading.int8_cache(run)
    assert str(caught.value) == f'permission denied while removing {old}'


def test_remove_entry_takes_folders_and_names_a_refused_file(
        tmp_path, monkeypatch):
    folder = tmp_path / 'run' / 'checkpoints'
    folder.mkdir(parents=True)
    (folder / 'epoch-0001.json').write_text('{}')
    files.remove_entry(str(tmp_path / 'run'))
    assert not os.path.exists(tmp_path / 'run')
    files.remove_entry(str(tmp_path / 'run'))  # already gone: no fault
    folder.mkdir(parents=True)
    refused = str(folder / 'epoch-0001.json')

    def rmtree(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES),
                              refused)
    monkeypatch.setattr(files.shutil, 'rmtree', rmtree)
    with pytest.raises(WriteError) as caught:
        files.remove_entry(str(tmp_path / 'run'))
    assert str(caught.value) == f'permission denied while removing {refused}'


def test_discard_passes_over_what_it_cannot_remove(tmp_path, monkeypatch):
    kept, gone = tmp_path / 'kept', tmp_path / 'gone'
    kept.write_text('x')
    gone.write_text('x')
    real = os.remove

    def remove(path):
        if path == str(kept):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        real(path)
    monkeypatch.setattr(os, 'remove', remove)
    files.discard([str(kept), str(gone), str(tmp_path / 'never')])
    assert os.listdir(tmp_path) == ['kept']
