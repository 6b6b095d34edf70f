"""`make docs`: the lessons as HTML pages, and those pages in a browser."""
import copy
import os
import subprocess
import sys

import pytest

pytest.importorskip('nbclient')
pytest.importorskip('ipykernel')
pytest.importorskip('nbconvert')

import nbformat  # noqa: E402
from notebook_harness import (LESSONS, NOTEBOOKS, REQUIRES,  # noqa: E402
                              injected, insert_overrides, read_notebook,
                              run_lesson)

CHROMIUM = '/usr/bin/chromium'  # Debian's package `chromium`
# headless, offline: no first-run, sync, component or background traffic,
# and every host name unresolved, so the pages' CDN scripts fail at once
CHROMIUM_FLAGS = (
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
    '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
    '--host-resolver-rules=MAP * ~NOTFOUND',
    # the checking page reads the lesson pages in its frames
    '--allow-file-access-from-files',
    '--dump-dom')
# opens index.html, then every page it links to, each in a frame (all
# before the window's load event, which waits for them); then writes a
# line per page: its link, <img> count, images decoded through their last
# row (drawn on a canvas: matplotlib's PNGs are opaque there), <title>
CHECKER = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>check</title>
<script>
function openPages(index) {
  for (const a of index.contentDocument.querySelectorAll('a[href]')) {
    const frame = document.createElement('iframe');
    frame.src = a.getAttribute('href');
    document.body.appendChild(frame);
  }
}
function decoded(img) {
  if (!img.complete || !img.naturalWidth) return false;
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  const last = context.getImageData(0, img.naturalHeight - 1,
                                    img.naturalWidth, 1).data;
  return last.some((value, k) => k % 4 === 3 && value > 0);
}
window.onload = () => {
  const lines = [];
  for (const frame of document.querySelectorAll('iframe')) {
    const href = frame.getAttribute('src');
    const page = frame.contentDocument;
    if (!page || !page.body) {
      lines.push(href + '\\tunreadable');
      continue;
    }
    const images = Array.from(page.images);
    lines.push([href, images.length, images.filter(decoded).length,
                page.title].join('\\t'));
  }
  document.getElementById('report').textContent = lines.join('\\n');
};
</script></head><body>
<pre id="report"></pre>
<iframe src="index.html" onload="openPages(this)"></iframe>
</body></html>
"""


def make_docs(*args):
    subprocess.run([sys.executable, f'{NOTEBOOKS}/make_docs.py', *args],
                   check=True, capture_output=True, text=True)


def test_make_docs_renders_lessons_with_their_images(tmp_path):
    """`make docs`, executing a lesson (small settings): its HTML page,
    holding its figures, and an index linking it (the pages of every
    lesson: test_docs_pages_load_with_their_figures_in_chromium)."""
    pytest.importorskip('sklearn')  # the lesson's photos
    lessons = tmp_path / 'lessons'
    lessons.mkdir()
    names = ['transposed_conv.ipynb']
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


@pytest.fixture(scope='session')
def chromium():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f'no browser: {CHROMIUM} (Debian package chromium) '
                    'is not installed')
    return CHROMIUM


@pytest.fixture(scope='module')
def docs(tmp_path_factory):
    """Every lesson's page and the index, as `make docs` writes them, but
    rendered from the lessons run small by the harness (once a session,
    shared with test_lessons.py) by `make_docs.py --no-execute`, which
    renders the outputs a notebook holds as nbconvert does without
    --execute: a reader's pages, from smaller runs, the test's own cells
    left out."""
    pytest.importorskip('sklearn')
    root = tmp_path_factory.mktemp('docs')
    executed = root / 'executed'
    executed.mkdir()
    for name in sorted(LESSONS):
        if name in REQUIRES:
            pytest.importorskip(REQUIRES[name])
        nb = copy.deepcopy(run_lesson(name, root))
        nb.cells = [c for c in nb.cells if not injected(c)]
        nbformat.write(nb, str(executed / name))
    make_docs('--no-execute', '--notebooks', str(executed),
              '--out', str(root / 'html'))
    return root / 'html'


def browse(chromium, docs, profile):
    """What the checking page reports, a line per page: (link, images,
    images decoded, title)."""
    (docs / 'check.html').write_text(CHECKER)
    proc = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f'--user-data-dir={profile}',
         (docs / 'check.html').as_uri()],
        capture_output=True, text=True, timeout=300)
    report = proc.stdout.split('<pre id="report">')[-1].split('</pre>')[0]
    assert report.strip(), f'chromium reported nothing: {proc.stderr[-500:]}'
    return [line.split('\t') for line in report.splitlines()]


def test_docs_pages_load_with_their_figures_in_chromium(chromium, docs,
                                                        tmp_path):
    """In a real browser (headless Chromium), the index links every
    lesson's page, and each page loads and decodes every figure it holds.
    """
    pages = browse(chromium, docs, tmp_path / 'profile')
    assert pages[0][:3] == ['index.html', '0', '0']
    links = [page[0] for page in pages[1:]]
    assert links == [name.replace('.ipynb', '.html')
                     for name in sorted(LESSONS)]
    for link, *seen in pages[1:]:
        assert seen != ['unreadable'], link
        images, decoded, title = seen
        embedded = (docs / link).read_text().count(
            'src="data:image/png;base64,')
        assert int(images) == embedded >= 1, link
        assert int(decoded) == embedded, f'{link}: figures not decoded'
        assert title, link
