"""`gluon-fcn reproduce` end to end on loopback: a VOC-layout tar made
here and served by an HTTP server on 127.0.0.1 behind a mirror that
answers 404 and one that serves the wrong file; a one-epoch run of each
edition from randomly initialised backbones; the plan, the report and
the verdict. The verdict itself is checked on the book's printed lines.
"""
import contextlib
import hashlib
import http.server
import io
import json
import os
import socket
import tarfile
import threading

import pytest
from PIL import Image

from gluon_fcn.app.cli import main
from gluon_fcn.core import book, sources

TAR = sources.VOC_TAR
TINY = ['--epochs', '1', '--crop', '64,64', '--batch-size', '2']
PRINTED = {'v1': 'epoch 5, loss 0.3471, train acc 0.887, test acc 0.853',
           'd2l': 'loss 0.322, train acc 0.894, test acc 0.851',
           'pytorch': 'loss 0.449, train acc 0.861, test acc 0.852'}


@pytest.mark.parametrize('edition', list(PRINTED))
def test_the_book_s_own_lines_are_within_its_spread_gap_0(edition):
    figures = book.parse_figures(PRINTED[edition])
    verdict = book.verdict(edition, figures['test_acc'])
    assert verdict.within is True and verdict.gap == 0
    line = verdict.line()
    assert line.startswith("verdict: within the book's spread")
    assert 'gap +0.000' in line
    assert figures == {k: v for k, v in book.EDITIONS[edition]
                       .figures.items() if k in figures}


def test_the_verdict_outside_and_off_the_recipe():
    assert book.verdict('d2l', 0.70).within is False
    assert book.verdict('d2l', 0.70).gap == pytest.approx(-0.151)
    assert book.verdict('v1', 0.7834).line().startswith('verdict: outside')
    changed = book.changes('d2l', 1, 32, (320, 480))
    assert changed == ('epochs 1 (book: 5)',)
    off = book.verdict('d2l', 0.851, changed)
    assert off.within is None and 'not the book' in off.line()
    assert book.parse_figures('epoch 3, loss nan, train acc 0.1') is None
    spread = book.EDITIONS['pytorch'].spread
    assert spread[0] < 0.852 < spread[1]


def free_port():
    """A port nothing listens on: connections to it are refused."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def voc_tar(tmp_path_factory):
    """(tar path, sha1): tiny synthetic VOC in the VOCdevkit layout."""
    from gluon_fcn.core.synthetic import make_synthetic_voc
    root = tmp_path_factory.mktemp('tar')
    make_synthetic_voc(str(root / 'VOCdevkit' / 'VOC2012'), num_train=4,
                       num_val=2, seed=0, sizes=((64, 96), (96, 64)),
                       progress=False)
    path = str(root / TAR)
    with tarfile.open(path, 'w') as tar:
        tar.add(str(root / 'VOCdevkit'), arcname='VOCdevkit')
    with open(path, 'rb') as f:
        return path, hashlib.sha1(f.read()).hexdigest()


@pytest.fixture(scope='module')
def mirrors(voc_tar):
    """{'missing', 'wrong', 'good': URL} on a loopback server, and the
    GET requests it served."""
    with open(voc_tar[0], 'rb') as f:
        files = {'/good/' + TAR: f.read(), '/wrong/' + TAR: b'not VOC' * 99}
    gets = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self, body=False):
            data = files.get(self.path)
            self.send_response(200 if data else 404)
            self.send_header('Content-Length', str(len(data or b'')))
            self.end_headers()
            if body and data:
                self.wfile.write(data)

        def do_GET(self):
            gets.append(self.path)
            self.do_HEAD(body=True)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f'http://127.0.0.1:{server.server_address[1]}'
    yield {name: f'{base}/{name}/{TAR}' for name in
           ('missing', 'wrong', 'good')}, gets
    server.shutdown()
    server.server_close()


@pytest.fixture(scope='module')
def backbones(tmp_path_factory):
    """Randomly initialised ImageNet-backbone files: Gluon's resnet18_v2
    (legacy format) and the port's torchvision resnet18 (.pth)."""
    import torch
    from mxnet.gluon.model_zoo import vision
    from gluon_fcn.compare import torch_port
    from gluon_fcn.core.checkpoint import save_params
    from gluon_fcn.core.arrays import zeros
    folder = tmp_path_factory.mktemp('backbones')
    net = vision.resnet18_v2()
    net.initialize()
    net(zeros((1, 3, 32, 32)))
    save_params(net, str(folder / 'resnet18_v2.params'))
    torch.save(torch_port.resnet18().state_dict(),
               str(folder / 'resnet18.pth'))
    return {'gluon': str(folder / 'resnet18_v2.params'),
            'torch': str(folder / 'resnet18.pth')}


def cli(argv):
    """(exit status, stdout, stderr) of `gluon-fcn ARGV`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope='module')
def runs(mirrors, voc_tar, backbones, tmp_path_factory):
    """One tiny run per edition into one data folder: v1 first, which
    downloads past the 404 and the wrong file; {edition: (status,
    stdout, stderr, out folder)}, and the GETs after each."""
    urls, gets = mirrors
    folder = tmp_path_factory.mktemp('reproduce')
    done = {}
    for edition in ('v1', 'd2l', 'pytorch'):
        out = str(folder / edition)
        params = backbones['torch' if edition == 'pytorch' else 'gluon']
        argv = ['reproduce', '--edition', edition, '--data-dir',
                str(folder / 'data'), '--out', out, '--backbone-params',
                params, '--voc-sha1', voc_tar[1], *TINY]
        for name in ('missing', 'wrong', 'good'):
            argv += ['--voc-url', urls[name]]
        done[edition] = cli(argv) + (out, list(gets))
    return done, str(folder / 'data')


def test_the_download_falls_back_past_a_404_and_a_wrong_file(runs,
                                                             mirrors):
    done, data_dir = runs
    status, _, err, _, gets = done['v1']
    urls = mirrors[0]
    assert status == 0, err
    assert gets == [f'/{n}/{TAR}' for n in ('missing', 'wrong', 'good')]
    notes = [line for line in err.splitlines() if 'failed' in line]
    assert notes == [
        f'gluon-fcn: note: {urls["missing"]} failed (404 Not Found); '
        'trying the next mirror',
        f'gluon-fcn: note: {urls["wrong"]} failed (sha1 mismatch); trying '
        'the next mirror']
    voc_dir = os.path.join(data_dir, 'VOCdevkit', 'VOC2012')
    with open(os.path.join(voc_dir, 'ImageSets', 'Segmentation',
                           'train.txt')) as f:
        assert len(f.read().split()) == 4
    assert len(os.listdir(os.path.join(voc_dir, 'JPEGImages'))) == 6
    # the later editions find it extracted: nothing more is fetched
    assert done['pytorch'][4] == gets
    assert not [n for n in os.listdir(data_dir) if n.endswith('.part')]


@pytest.mark.parametrize('edition', ['v1', 'd2l', 'pytorch'])
def test_each_edition_runs_and_reports(runs, edition):
    status, out, err, folder, _ = runs[0][edition]
    assert status == 0, err
    lines = out.splitlines()
    e = book.EDITIONS[edition]
    assert lines[0] == f'reproduce: {e.title}, through {e.code}'
    assert "not the book's recipe: epochs 1 (book: 5)" in lines[1]
    plan = [line for line in lines if line.startswith('plan: ')]
    assert any('plan: time: about' in line and 'an estimate' in line
               for line in plan)
    if edition == 'v1':
        # the first that answers; its checksum is known once it is in
        assert any('will download 1 kB from' in line and '/wrong/' in line
                   for line in plan), plan
        assert any('404 Not Found' in line for line in plan)
    else:
        assert any(line.startswith('plan: VOC2012: present in')
                   for line in plan)
    assert lines[-1].startswith("verdict: none, not the book's recipe")
    report = json.load(open(os.path.join(folder, 'reproduce.json')))
    assert report['edition'] == edition and not report['book_recipe']
    assert report['book']['test_acc'] == e.figures['test_acc']
    assert report['recipe']['epochs'] == 1
    assert report['recipe']['crop'] == [64, 64]
    assert report['recipe']['lr'] == e.lr
    assert len(report['run']['epochs']) == 1
    final = report['run']['final']
    assert 0 <= final['test_acc'] <= 1 and final['loss'] > 0
    assert report['run']['gaps']['test_acc'] == pytest.approx(
        final['test_acc'] - e.figures['test_acc'], abs=1e-4)
    assert report['machine']['cpu'] and report['machine']['cores'] >= 1
    assert report['verdict']['line'] == lines[-1]
    md = open(os.path.join(folder, 'reproduce.md')).read()
    assert "Not the book's recipe" in md and e.printed in md
    assert Image.open(os.path.join(folder, 'curves.png')).size[0] > 300


def test_the_dry_run_offline_names_each_missing_source(tmp_path,
                                                       monkeypatch):
    refused = f'http://127.0.0.1:{free_port()}'
    monkeypatch.setenv('MXNET_GLUON_REPO', refused + '/')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setattr(sources, 'TORCH_BACKBONE_URL',
                        f'{refused}/{sources.TORCH_BACKBONE}')
    for edition in ('v1', 'pytorch'):
        root = [] if edition == 'pytorch' else [
            '--model-root', str(tmp_path / 'm')]
        status, out, err = cli([
            'reproduce', '--edition', edition, '--dry-run', '--data-dir',
            str(tmp_path / 'data'), *root, '--voc-url', f'{refused}/{TAR}',
            *TINY])
        assert status == 0, err
        missing = [line for line in out.splitlines()
                   if line.startswith('missing: ')]
        assert len(missing) == 2, out
        assert f'put {TAR}' in missing[0] and '--voc-tar' in missing[0]
        name = ('resnet18-f37072fd.pth' if edition == 'pytorch' else
                'resnet18_v2-a81db45f.params')
        folder = tmp_path / ('torch/hub/checkpoints' if edition ==
                             'pytorch' else 'm')
        assert f'put {name} in {folder} or give --backbone-params' in \
            missing[1]
        assert 'connection refused' in out
        assert not (tmp_path / 'data').exists()


@pytest.mark.parametrize('extra, message', [
    (['--voc-sha1', 'xyz'], '--voc-sha1 xyz: not a sha1'),
    (['--backbone-params', '/no/such.params'],
     '--backbone-params /no/such.params: no such file'),
    (['--voc-tar', '/no/such.tar'], '--voc-tar /no/such.tar: no such file'),
    (['--voc-tar', __file__, '--voc-url', 'http://127.0.0.1/v.tar'],
     '--voc-tar: give it or --voc-url, not both'),
    (['--crop', '100,100'], '--crop 100,100: both sides must be'),
    (['--epochs', '0'], '--epochs must be a positive integer'),
    (['--edition', 'pytorch', '--model-root', 'm'],
     '--model-root: goes with --edition v1 or d2l'),
])
def test_bad_input_is_one_line_naming_the_flag(extra, message, tmp_path):
    edition = [] if '--edition' in extra else ['--edition', 'd2l']
    status, _, err = cli(['reproduce', *edition, '--out',
                          str(tmp_path / 'out'), *extra])
    assert status == 2
    assert err.startswith(f'gluon-fcn: error: {message}'), err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize('edition, kind, wants', [
    ('d2l', 'torch', 'a Gluon params file of resnet18_v2'),
    ('pytorch', 'gluon', "torchvision's resnet18 .pth")])
def test_each_edition_takes_its_framework_s_backbone(edition, kind, wants,
                                                     backbones):
    status, _, err = cli(['reproduce', '--edition', edition, '--dry-run',
                          '--backbone-params', backbones[kind]])
    assert status == 2
    assert err == (f'gluon-fcn: error: --backbone-params {backbones[kind]}'
                   f': --edition {edition} takes {wants}\n')


def test_a_missing_source_ends_in_one_line(tmp_path, backbones, voc_tar):
    """No mirror answers: what was tried and the file and folder that
    would do; a tar of the wrong checksum given with --voc-tar: named."""
    refused = f'http://127.0.0.1:{free_port()}/{TAR}'
    base = ['reproduce', '--edition', 'd2l', '--data-dir',
            str(tmp_path / 'data'), '--out', str(tmp_path / 'out'),
            '--backbone-params', backbones['gluon'], *TINY]
    status, _, err = cli(base + ['--voc-url', refused])
    assert status == 2
    last = err.splitlines()[-1]
    assert last == (f'gluon-fcn: error: VOC2012: tried {refused} '
                    f'(connection refused); to work offline put {TAR} '
                    f'(sha1 {sources.dl.VOC_SHA1}) in '
                    f'{tmp_path / "data"}, or give --voc-tar FILE')
    status, _, err = cli(base + ['--voc-tar', voc_tar[0]])
    assert status == 2
    assert err.splitlines()[-1].startswith(
        f'gluon-fcn: error: --voc-tar {voc_tar[0]}: sha1 {voc_tar[1]}, '
        f'not {sources.dl.VOC_SHA1}')
    assert not os.path.exists(tmp_path / 'out' / 'reproduce.json')


def test_a_missing_backbone_ends_in_one_line(tmp_path, voc_tar,
                                             monkeypatch):
    """VOC2012 from --voc-tar; the model store refuses: the line names
    the store's URL, the file and the --model-root folder."""
    refused = f'http://127.0.0.1:{free_port()}/'
    monkeypatch.setenv('MXNET_GLUON_REPO', refused)
    root = tmp_path / 'models'
    status, _, err = cli([
        'reproduce', '--edition', 'v1', '--data-dir', str(tmp_path / 'd'),
        '--out', str(tmp_path / 'out'), '--model-root', str(root),
        '--voc-tar', voc_tar[0], '--voc-sha1', voc_tar[1], *TINY])
    assert status == 2
    name = 'resnet18_v2-a81db45f'
    assert err.splitlines()[-1] == (
        f'gluon-fcn: error: ImageNet weights of resnet18_v2: tried the '
        f'Gluon model store ({refused}gluon/models/{name}.zip: connection '
        f'refused); to work offline put {name}.params in {root}, or give '
        '--backbone-params FILE')
    assert os.path.isdir(tmp_path / 'd' / 'VOCdevkit' / 'VOC2012')


def test_without_pytorch_the_dry_run_says_so_and_a_run_refuses(
        tmp_path, monkeypatch, backbones):
    from gluon_fcn.app import reproduce, reproduce_plan
    monkeypatch.setattr(reproduce_plan, 'has_torch', lambda: False)
    monkeypatch.setattr(reproduce, 'has_torch', lambda: False)
    argv = ['reproduce', '--edition', 'pytorch', '--data-dir',
            str(tmp_path), '--backbone-params', backbones['torch'], *TINY,
            '--voc-url', f'http://127.0.0.1:{free_port()}/{TAR}']
    status, out, _ = cli(argv + ['--dry-run'])
    assert status == 0
    assert 'plan: time: not estimated, no PyTorch here' in out
    assert "missing: PyTorch: pip install 'gluon-fcn[compare]'" in out
    status, _, err = cli(argv)
    assert (status, err) == (2, "gluon-fcn: error: --edition pytorch needs "
                             "PyTorch: pip install 'gluon-fcn[compare]'\n")


def test_a_backbone_file_that_is_not_one_is_named(tmp_path, voc_tar):
    junk = tmp_path / 'junk.params'
    junk.write_bytes(b'not parameters')
    status, _, err = cli([
        'reproduce', '--edition', 'd2l', '--data-dir', str(tmp_path / 'd'),
        '--out', str(tmp_path / 'out'), '--backbone-params', str(junk),
        '--voc-tar', voc_tar[0], '--voc-sha1', voc_tar[1], *TINY])
    assert (status, err.splitlines()[-1]) == (
        2, f"gluon-fcn: error: --backbone-params {junk}: not the "
        "parameters of Gluon's resnet18_v2 or its features")
