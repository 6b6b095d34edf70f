"""`make docs`: the lessons as HTML pages."""
import subprocess
import sys

import pytest

pytest.importorskip('nbclient')
pytest.importorskip('ipykernel')
pytest.importorskip('nbconvert')

import nbformat  # noqa: E402
from notebook_harness import (LESSONS, NOTEBOOKS,  # noqa: E402
                              insert_overrides, read_notebook)


def make_docs(*args):
    subprocess.run([sys.executable, f'{NOTEBOOKS}/make_docs.py', *args],
                   check=True, capture_output=True, text=True)


def test_make_docs_renders_lessons_with_their_images(tmp_path):
    """`make docs` for two lessons (small settings): an HTML page each,
    holding its figures, and an index linking them."""
    pytest.importorskip('sklearn')
    lessons = tmp_path / 'lessons'
    lessons.mkdir()
    names = ['transposed_conv.ipynb', 'autoencoder.ipynb']
    for name in names:
        nb = read_notebook(name)
        insert_overrides(nb, LESSONS[name])
        nbformat.write(nb, str(lessons / name))
    out = tmp_path / 'docs'
    make_docs('--notebooks', str(lessons), '--out', str(out))
    index = (out / 'index.html').read_text()
    for name in names:
        page = (out / name.replace('.ipynb', '.html')).read_text()
        assert page.count('data:image/png;base64,') >= 1, name
        assert f'href="{name.replace(".ipynb", ".html")}"' in index
