"""notebooks/fcn.ipynb runs top to bottom on a small synthetic dataset."""
import json
import os
import sys

import pytest

nbformat = pytest.importorskip('nbformat')
nbclient = pytest.importorskip('nbclient')

NOTEBOOK = os.path.join(os.path.dirname(__file__), '..', 'notebooks',
                        'fcn.ipynb')


def outputs_text(cell):
    parts = []
    for out in cell.get('outputs', []):
        parts.append(out.get('text', ''))
        parts.append(out.get('data', {}).get('text/plain', ''))
    return ''.join(parts)


@pytest.fixture
def kernel_name(tmp_path, monkeypatch):
    """A kernelspec for this interpreter, whatever else is installed."""
    spec = tmp_path / 'jupyter' / 'kernels' / 'gluon-fcn-test'
    spec.mkdir(parents=True)
    (spec / 'kernel.json').write_text(json.dumps({
        'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f',
                 '{connection_file}'],
        'display_name': 'gluon-fcn test', 'language': 'python'}))
    monkeypatch.setenv('JUPYTER_PATH', str(tmp_path / 'jupyter'))
    return 'gluon-fcn-test'


def test_notebook_runs_the_chapter(tmp_path, monkeypatch, kernel_name):
    from gluon_fcn.core.synthetic import make_synthetic_voc
    data = make_synthetic_voc(str(tmp_path / 'voc'), 12, 6, seed=0,
                              sizes=((128, 160), (160, 192), (96, 128)),
                              progress=False)
    monkeypatch.setenv('FCN_NB_DATA', data)
    monkeypatch.setenv('FCN_NB_CROP', '96,128')
    monkeypatch.setenv('FCN_NB_EPOCHS', '1')
    monkeypatch.setenv('FCN_NB_BATCH', '4')
    monkeypatch.setenv('MPLBACKEND', 'module://matplotlib_inline.backend_'
                       'inline')
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(c.get('outputs') for c in nb.cells if
                   c.cell_type == 'code'), 'commit the notebook cleared'
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name=kernel_name,
        resources={'metadata': {'path': os.path.dirname(NOTEBOOK)}}
    ).execute()
    code = [c for c in nb.cells if c.cell_type == 'code']
    text = ''.join(outputs_text(c) for c in code)
    assert '348' in text and '573' in text  # the chapter's values
    assert '(1, 10, 32, 32) -> (1, 3, 64, 64)' in text
    assert '(1, 512, 10, 15)' in text
    training = [c for c in code if 'points = train_ch13(' in c.source][0]
    assert 'loss ' in outputs_text(training)
    assert ', test acc ' in outputs_text(training)
    last = code[-1]  # the chapter's last figure
    assert any('image/png' in out.get('data', {})
               for out in last.get('outputs', []))
