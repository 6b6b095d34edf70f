"""Run the lesson notebooks under test: functions, not tests.

`run_notebook` executes a notebook top to bottom with nbclient, in a
kernel of this very interpreter importing this checkout, after inserting
a cell of override assignments right after the cell tagged `parameters`
(papermill's convention); any error in any cell fails the run. Each
figure shown can also record its titles and legend entries beside its
PNG (`figures_in`). `run_lesson` runs a lesson of LESSONS once a test
session, for every test that reads it. The `assert_*` helpers check
what a reader would see.

To add a lesson, add one line to LESSONS: the notebook in notebooks/ and
the parameter overrides that make it small; the tests then run it.
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

# the synthetic data set most lessons share, small: ~94x125 images
TINY_DATA = {'num_train': 16, 'num_val': 8, 'synth_scale': 0.25}
LESSONS = {
    'transposed_conv.ipynb': {'image_size': 64, 'factor': 2},
    'autoencoder.ipynb': {'data_source': 'sklearn', 'num_epochs': 2,
                          'num_scatter': 60, 'latent_point': (1.0, -2.0)},
    'fcn.ipynb': dict(TINY_DATA, crop_size=(64, 96), batch_size=4,
                      num_epochs=1),
    'fcn_v1.ipynb': {'crop_size': (64, 96), 'batch_size': 4,
                     'num_epochs': 1, 'num_train': 12, 'num_val': 8,
                     'synthetic_sizes': ((96, 128), (128, 160))},
    'fcn_exercises.ipynb': dict(TINY_DATA, crop_size=(64, 96),
                                batch_size=4, num_epochs=1, lrs=(0.1, 0.3),
                                wds=(1e-3,), heads=('8s',), num_show=1),
    'binary_segmentation.ipynb': {
        'crop_size': (64, 64), 'batch_size': 4, 'num_epochs': 1,
        'num_train': 8, 'num_val': 4,
        'image_sizes': ((64, 80), (80, 96))},
    'pytorch_comparison.ipynb': dict(TINY_DATA, crop_size=(64, 96),
                                     batch_size=2, steps=3),
    # torchvision's FCN from a file that is not there: the random-weights
    # fallback, whatever the machine's torch hub cache holds
    'pretrained_fcn.ipynb': dict(TINY_DATA, fallback_crop=(64, 96),
                                 fallback_batch=4, fallback_epochs=1,
                                 torchvision_model='fcn_resnet50',
                                 torchvision_params='absent.pth',
                                 torchvision_size=64),
}
# what a lesson needs beyond the test extra (all: scikit-learn's photos
# and digits)
REQUIRES = {'pytorch_comparison.ipynb': 'torch'}

# PNGs say nothing a test can read, so each figure the kernel shows also
# gets a FIGURE_TEXT representation: its suptitle, axes titles and legend
# entries as JSON. HTML renderings skip the unknown type. The formatter
# answers for figures itself: `%matplotlib inline` drops every printer
# registered for Figure.
FIGURE_TEXT = 'text/x-figure-text'
RECORD_FIGURES = f"""\
def _record_figures():
    import json

    from IPython import get_ipython
    from IPython.core.formatters import BaseFormatter
    from matplotlib.figure import Figure
    from traitlets import Unicode

    class FigureText(BaseFormatter):
        format_type = Unicode({FIGURE_TEXT!r})

        def __call__(self, fig):
            if not isinstance(fig, Figure):
                return None
            legends = fig.legends + [ax.get_legend() for ax in fig.axes
                                     if ax.get_legend()]
            return json.dumps({{
                'suptitle': fig.get_suptitle(),
                'titles': [ax.get_title() for ax in fig.axes],
                'legend': [t.get_text() for legend in legends
                           for t in legend.get_texts()]}})

    formatters = get_ipython().display_formatter
    formatters.formatters[{FIGURE_TEXT!r}] = FigureText(parent=formatters)


_record_figures()
del _record_figures
"""


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


def run_notebook(name, overrides, kernel_name, workdir, timeout=600,
                 record_figures=False):
    """The executed notebook `name` (in notebooks/), run in `workdir`;
    with `record_figures`, its figures' words too (`figures_in`)."""
    nb = read_notebook(name)
    insert_overrides(nb, overrides)
    if record_figures:
        nb.cells.insert(0, nbformat.v4.new_code_cell(
            RECORD_FIGURES, metadata={'tags': ['injected-figure-text']}))
    NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                   resources={'metadata': {'path': str(workdir)}}).execute()
    return nb


_RUN = {}  # lesson name -> the executed notebook, once a test session


def run_lesson(name, root):
    """The lesson `name` executed with its LESSONS overrides; the first
    call runs it in `root`, later ones (any test module) reuse it."""
    if name not in _RUN:
        with python_kernel(os.path.join(str(root), 'jupyter')) as kernel:
            _RUN[name] = run_notebook(name, LESSONS[name], kernel, root,
                                      record_figures=True)
    return _RUN[name]


def outputs_text(cell):
    """The text a cell printed or returned."""
    parts = []
    for out in cell.get('outputs', []):
        parts.append(out.get('text', ''))
        parts.append(out.get('data', {}).get('text/plain', ''))
    return ''.join(parts)


def injected(cell):
    return any(tag.startswith('injected-')
               for tag in cell.get('metadata', {}).get('tags', []))


def cell_running(nb, snippet):
    """The first code cell of the lesson whose source contains `snippet`.
    """
    found = [c for c in code_cells(nb)
             if snippet in c.source and not injected(c)]
    assert found, f'no code cell contains {snippet!r}'
    return found[0]


def count_images(cell):
    return sum('image/png' in out.get('data', {})
               for out in cell.get('outputs', []))


def figures_in(cell):
    """What each figure a cell showed says: a dict of its 'suptitle', axes
    'titles' and 'legend' entries, one a figure."""
    return [json.loads(out['data'][FIGURE_TEXT])
            for out in cell.get('outputs', [])
            if FIGURE_TEXT in out.get('data', {})]


def figures_drawn(nb, snippet):
    """`figures_in` the cell running `snippet`."""
    return figures_in(cell_running(nb, snippet))


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
