"""The lesson notebooks run top to bottom, small, and show what they say.

To add a lesson, add one line to LESSONS: the notebook in notebooks/ and
the parameter overrides that make it small; the generic test then runs it.
"""
import re

import pytest

pytest.importorskip('nbclient')
pytest.importorskip('ipykernel')

from notebook_harness import (assert_committed_clean, assert_images,  # noqa
                              cell_running, code_cells, count_images,
                              outputs_text, python_kernel, run_notebook)

LESSONS = {
    'transposed_conv.ipynb': {'image_size': 64, 'factor': 2},
    'autoencoder.ipynb': {'data_source': 'sklearn', 'num_epochs': 2,
                          'num_scatter': 60, 'latent_point': (1.0, -2.0)},
}


@pytest.fixture(scope='module')
def lesson(tmp_path_factory):
    """Run a lesson once, with its overrides, on first use."""
    pytest.importorskip('sklearn')  # the photo and the digits
    root = tmp_path_factory.mktemp('lessons')
    done = {}

    def run(name):
        if name not in done:
            with python_kernel(str(root / 'jupyter')) as kernel:
                done[name] = run_notebook(name, LESSONS[name], kernel, root)
        return done[name]
    return run


def printed(nb):
    return ''.join(outputs_text(c) for c in code_cells(nb))


@pytest.mark.parametrize('name', sorted(LESSONS))
def test_lesson_runs_clean_and_draws(name, lesson):
    assert_committed_clean(name)
    nb = lesson(name)
    assert sum(count_images(c) for c in code_cells(nb)) >= 1


def test_transposed_conv_lesson_shows_the_books_results(lesson):
    nb = lesson('transposed_conv.ipynb')
    text = printed(nb)
    assert '[ 4. 12.  9.]' in text  # d2l's trans_conv(X, K)
    assert 'W is (4, 16)' in text  # d2l v1's matrix
    assert text.count('[348. 393. 528. 573.]') == 2  # conv and W @ x
    assert '(1, 3, 64, 64) -> (1, 10, 32, 32)' in text
    assert '(1, 10, 32, 32) -> (1, 3, 64, 64)' in text
    assert '(1, 10, 16, 16) -> (1, 20, 6, 6) -> (1, 10, 16, 16)' in text
    gradient = outputs_text(cell_running(nb, 'y.backward(head)'))
    rows = [line.split(':')[1].split() for line in gradient.splitlines()
            if ':' in line]
    assert len(rows) == 3 and rows[0] == rows[1] == rows[2]
    for example, shape in (('4x4, 3x3 VALID', '(1, 1, 2, 2)'),
                           ('5x5, 3x3 SAME', '(1, 1, 5, 5)'),
                           ('5x5, 3x3 stride 2 VALID', '(1, 1, 2, 2)'),
                           ('and transposed back', '(1, 1, 5, 5)')):
        assert re.search(rf'{example}\s+-> {re.escape(shape)}', text)
    assert 'crop (1, 3, 64, 64), pooled (1, 3, 32, 32)' in text
    inside = re.search(r'largest difference inside: (\S+),', text)
    assert float(inside.group(1)) < 1e-5
    assert '(320, 480)' in text  # the FCN's 32x upsampler on 10 x 15
    for snippet in ('fig.suptitle', "label='photo'", 'ax.plot(onp.arange'):
        assert_images(nb, snippet)


def test_autoencoder_lesson_shows_shapes_training_and_latent_space(lesson):
    nb = lesson('autoencoder.ipynb')
    text = printed(nb)
    assert "data: scikit-learn's 8x8 handwritten digits" in text
    assert ('(1, 1, 28, 28) -> (1, 32, 14, 14) -> (1, 64, 7, 7) -> '
            '(1, 2, 1, 1) -> (1, 64, 7, 7) -> (1, 32, 14, 14) -> '
            '(1, 1, 28, 28)') in text
    assert re.search(r'after 2 epochs: training loss [\d.]+, test error',
                     text)
    assert 'decoding latent point (1.00, -2.00)' in text  # the override
    for snippet in ('load_digit_images', 'train_autoencoder(',
                    'ae.decode(net, ae.encode(', 'def scatter_latent',
                    'if latent_point is None'):
        assert_images(nb, snippet)


def test_make_docs_renders_lessons_with_their_images(tmp_path):
    """`make docs` for two lessons (small settings): an HTML page each,
    holding its figures, and an index linking them."""
    import subprocess
    import sys
    from notebook_harness import NOTEBOOKS, insert_overrides, read_notebook
    import nbformat
    pytest.importorskip('nbconvert')
    pytest.importorskip('sklearn')
    lessons = tmp_path / 'lessons'
    lessons.mkdir()
    names = ['transposed_conv.ipynb', 'autoencoder.ipynb']
    for name in names:
        nb = read_notebook(name)
        insert_overrides(nb, LESSONS[name])
        nbformat.write(nb, str(lessons / name))
    out = tmp_path / 'docs'
    subprocess.run([sys.executable, f'{NOTEBOOKS}/make_docs.py',
                    '--notebooks', str(lessons), '--out', str(out)],
                   check=True, capture_output=True, text=True)
    index = (out / 'index.html').read_text()
    for name in names:
        page = (out / name.replace('.ipynb', '.html')).read_text()
        assert page.count('data:image/png;base64,') >= 1, name
        assert f'href="{name.replace(".ipynb", ".html")}"' in index
