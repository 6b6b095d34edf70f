"""Execute the lessons and render them to HTML, with an index page.

    python notebooks/make_docs.py [--notebooks DIR] [--out DIR]
                                  [--no-execute] [NAME ...]

Each notebook runs top to bottom as a reader runs it (`jupyter nbconvert
--execute`, its default settings, in its own folder), and its HTML, with
the figures embedded, goes to the output folder (default docs/, which git
ignores); index.html lists the lessons with the title and run time of
each. A lesson that fails stops the build with one line naming it.
`--no-execute` renders the outputs the notebooks hold as they are, for
notebooks executed elsewhere (the tests run them small, then render).
"""
import argparse
import glob
import html
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def title_of(path):
    """The first markdown heading of a notebook, else its file name."""
    with open(path, encoding='utf-8') as f:
        cells = json.load(f)['cells']
    for cell in cells:
        if cell['cell_type'] == 'markdown':
            for line in ''.join(cell['source']).splitlines():
                if line.startswith('#'):
                    return line.lstrip('#').strip()
    return os.path.basename(path)


def render(path, out_dir, timeout=600, execute=True):
    """Execute `path` and write its HTML to `out_dir`; the seconds taken.
    Without `execute`, the outputs it holds, rendered in this process
    (`jupyter nbconvert --to html` without --execute, less its start-up).
    """
    tic = time.time()
    if not execute:
        from nbconvert import HTMLExporter
        page, _ = HTMLExporter().from_filename(path)
        name = os.path.splitext(os.path.basename(path))[0] + '.html'
        with open(os.path.join(out_dir, name), 'w', encoding='utf-8') as f:
            f.write(page)
        return time.time() - tic
    proc = subprocess.run(
        [sys.executable, '-m', 'jupyter', 'nbconvert', '--to', 'html',
         '--execute', f'--ExecutePreprocessor.timeout={timeout}',
         '--output-dir', os.path.abspath(out_dir), os.path.basename(path)],
        cwd=os.path.dirname(os.path.abspath(path)), capture_output=True,
        text=True)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ['failed'])[-1]
        sys.exit(f'make_docs: error: {path}: {last}')
    return time.time() - tic


def write_index(entries, out_dir):
    """index.html: a link to each lesson with its title and run time
    (none where `seconds` is None: not run here)."""
    items = '\n'.join(
        f'<li><a href="{html.escape(name)}">{html.escape(title)}</a>'
        + ('' if seconds is None else f' ({seconds:.0f} s)') + '</li>'
        for name, title, seconds in entries)
    page = ('<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            '<title>gluon-fcn lessons</title></head><body>\n'
            '<h1>gluon-fcn lessons</h1>\n<ul>\n' + items +
            '\n</ul>\n</body></html>\n')
    with open(os.path.join(out_dir, 'index.html'), 'w',
              encoding='utf-8') as f:
        f.write(page)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--notebooks', default=HERE,
                        help='folder of the .ipynb lessons')
    parser.add_argument('--out', default=os.path.join(HERE, '..', 'docs'),
                        help='folder for the HTML pages')
    parser.add_argument('--no-execute', dest='execute',
                        action='store_false',
                        help='render the outputs stored in the notebooks')
    parser.add_argument('names', nargs='*', help='lessons to build '
                        '(default: every notebook in --notebooks)')
    args = parser.parse_args(argv)
    paths = [os.path.join(args.notebooks, n) for n in args.names] or \
        sorted(glob.glob(os.path.join(args.notebooks, '*.ipynb')))
    os.makedirs(args.out, exist_ok=True)
    entries = []
    for path in paths:
        seconds = render(path, args.out, execute=args.execute)
        name = os.path.splitext(os.path.basename(path))[0] + '.html'
        entries.append((name, title_of(path),
                        seconds if args.execute else None))
        print(f'{name}: {seconds:.0f} s', flush=True)
    write_index(entries, args.out)
    print(f'wrote {len(entries)} lessons and index.html to {args.out}')


if __name__ == '__main__':
    main()
