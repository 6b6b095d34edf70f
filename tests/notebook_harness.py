"""Run the lesson notebooks under test: functions, not tests.

`run_notebook` executes a notebook top to bottom with nbclient, in a
kernel of this very interpreter importing this checkout, after inserting
a cell of override assignments right after the cell tagged `parameters`
(papermill's convention); any error in any cell fails the run. The
`assert_*` helpers check what a reader would see.
"""
import contextlib
import json
import os
import sys

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = os.path.join(os.path.dirname(__file__), '..', 'notebooks')
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
KERNEL_NAME = 'gluon-fcn-lessons'
INLINE = 'module://matplotlib_inline.backend_inline'


@contextlib.contextmanager
def python_kernel(directory):
    """While open, Jupyter finds `KERNEL_NAME`: this interpreter, importing
    gluon_fcn from this checkout, figures inline. Yields the name."""
    spec = os.path.join(directory, 'kernels', KERNEL_NAME)
    os.makedirs(spec, exist_ok=True)
    path = os.pathsep.join(p for p in (REPO, os.environ.get('PYTHONPATH'))
                           if p)
    with open(os.path.join(spec, 'kernel.json'), 'w') as f:
        json.dump({'argv': [sys.executable, '-m', 'ipykernel_launcher',
                            '-f', '{connection_file}'],
                   'display_name': 'gluon-fcn lessons', 'language': 'python',
                   'env': {'PYTHONPATH': path, 'MPLBACKEND': INLINE}}, f)
    saved = os.environ.get('JUPYTER_PATH')
    os.environ['JUPYTER_PATH'] = directory
    try:
        yield KERNEL_NAME
    finally:
        if saved is None:
            del os.environ['JUPYTER_PATH']
        else:
            os.environ['JUPYTER_PATH'] = saved


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == 'code']


def parameters_index(nb):
    """The index of the one cell tagged `parameters`."""
    tagged = [i for i, c in enumerate(nb.cells)
              if 'parameters' in c.get('metadata', {}).get('tags', [])]
    assert len(tagged) == 1, f'{len(tagged)} cells tagged parameters'
    assert nb.cells[tagged[0]].cell_type == 'code'
    return tagged[0]


def insert_overrides(nb, overrides):
    """Put `name = value` lines for `overrides` in a new code cell right
    after the parameters cell; every name must be a parameter."""
    index = parameters_index(nb)
    source = nb.cells[index].source
    for name in overrides:
        assert f'\n{name} = ' in f'\n{source}', f'{name} is no parameter'
    cell = nbformat.v4.new_code_cell(
        '\n'.join(f'{name} = {value!r}' for name, value in overrides.items()),
        metadata={'tags': ['injected-parameters']})
    nb.cells.insert(index + 1, cell)


def read_notebook(name):
    return nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)


def run_notebook(name, overrides, kernel_name, workdir, timeout=600):
    """The executed notebook `name` (in notebooks/), run in `workdir`."""
    nb = read_notebook(name)
    insert_overrides(nb, overrides)
    NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                   resources={'metadata': {'path': str(workdir)}}).execute()
    return nb


def outputs_text(cell):
    """The text a cell printed or returned."""
    parts = []
    for out in cell.get('outputs', []):
        parts.append(out.get('text', ''))
        parts.append(out.get('data', {}).get('text/plain', ''))
    return ''.join(parts)


def cell_running(nb, snippet):
    """The first code cell whose source contains `snippet`."""
    found = [c for c in code_cells(nb) if snippet in c.source]
    assert found, f'no code cell contains {snippet!r}'
    return found[0]


def count_images(cell):
    return sum('image/png' in out.get('data', {})
               for out in cell.get('outputs', []))


def assert_images(nb, snippet, count=1):
    """The cell running `snippet` drew at least `count` PNG figures."""
    cell = cell_running(nb, snippet)
    assert count_images(cell) >= count, (
        f'{count_images(cell)} figures from the cell running {snippet!r}')


def assert_figures(nb, *snippets):
    """Each cell running one of `snippets` drew a PNG figure."""
    for snippet in snippets:
        assert_images(nb, snippet)


def assert_committed_clean(name):
    """The committed notebook: outputs cleared, a markdown cell first."""
    nb = read_notebook(name)
    assert nb.cells[0].cell_type == 'markdown', 'open with what it teaches'
    for cell in code_cells(nb):
        assert not cell.get('outputs') and cell.execution_count is None, (
            f'commit {name} with outputs cleared')
    parameters_index(nb)
