"""Time each lesson notebook as a reader runs it: defaults, top to bottom.

    .venv/bin/python benchmarks/lessons.py [NOTEBOOK ...] [--set NAME=VALUE]

Each notebook runs in a fresh kernel of this interpreter (through
`tests/notebook_harness.py`, with no overrides unless `--set` gives
some) from `notebooks/` as its working directory, as `jupyter nbconvert
--execute` runs it. Prints a line per notebook: wall time, the kernel's
peak resident memory, the load average before and after, and the CPU;
`--json PATH` also writes them, `--save DIR` the executed notebooks.
Run it on a quiet machine: the numbers are the machine's as much as the
notebook's.
"""
import argparse
import ast
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests'))

from notebook_harness import (NOTEBOOKS, python_kernel,  # noqa: E402
                              run_notebook)

from gluon_fcn.fast.native import cpu_model  # noqa: E402


def children_peak_mb():
    """Peak RSS of the largest finished child process (the kernel), MB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def time_notebook(name, overrides, kernel, save=None):
    load = os.getloadavg()[0]
    tic = time.time()
    nb = run_notebook(name, overrides, kernel, NOTEBOOKS, timeout=1800)
    if save:
        os.makedirs(save, exist_ok=True)
        nbformat.write(nb, os.path.join(save, name))
    return {'notebook': name, 'seconds': round(time.time() - tic, 1),
            'load_before': round(load, 2),
            'load_after': round(os.getloadavg()[0], 2)}


def parse_overrides(items):
    overrides = {}
    for item in items or ():
        name, _, value = item.partition('=')
        overrides[name] = ast.literal_eval(value)
    return overrides


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     allow_abbrev=False)
    parser.add_argument('notebooks', nargs='*', help='default: all')
    parser.add_argument('--set', action='append', metavar='NAME=VALUE',
                        help='a parameter override (a Python literal)')
    parser.add_argument('--json', help='write the results here too')
    parser.add_argument('--save', metavar='DIR',
                        help='write the executed notebooks here')
    args = parser.parse_args(argv)
    names = [os.path.basename(n) for n in args.notebooks] or sorted(
        n for n in os.listdir(NOTEBOOKS) if n.endswith('.ipynb'))
    if len(names) > 1:  # one process each: a peak of its own kernel
        sets = [f'--set={item}' for item in args.set or ()]
        sets += [f'--save={args.save}'] if args.save else []
        results = [json.loads(subprocess.run(
            [sys.executable, __file__, name] + sets, check=True,
            stdout=subprocess.PIPE, text=True).stdout.splitlines()[-1])
            for name in names]
    else:
        with tempfile.TemporaryDirectory() as jupyter:
            with python_kernel(jupyter) as kernel:
                result = time_notebook(names[0], parse_overrides(args.set),
                                       kernel, args.save)
        result.update(peak_rss_mb=round(children_peak_mb()),
                      cpu=cpu_model(), cores=os.cpu_count())
        results = [result]
    if len(names) == 1:
        print(json.dumps(results[0]), flush=True)
    else:
        for result in results:
            print(json.dumps(result), flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
