"""`make test`: the suite in parts, LANES parts at a time.

Each part is one pytest process over a share of the modules of about
equal cost (`--shard K/N`, conftest.deal): MXNet keeps the memory a
process has used, which grew past 19 GB over the whole suite in one
process. Then the numerical
tests again, a process each, with oneDNN held to a lower instruction set:
the kernels other CPUs take (README, "Development").

Most tests keep one core busy (pytest, PIL, small arrays, child
processes), so two parts side by side, each given its share of the cores
as OpenMP threads, finish the suite in about half the time (README,
results log). A part's output is printed whole when it ends, so two parts
never interleave their lines; the first part that fails stops the rest.
The last line counts the skips of the whole suite by cause.

    python tests/suite.py [--order ORDER] [--parts N] [--lanes L]
                          [--isa ISA ...]
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_TESTS = 5  # pytest's exit status where a part selects no test
# where conftest writes a part's skips by cause, as JSON
SKIP_COUNTS_VAR = 'GLUON_FCN_SKIP_COUNTS'


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='tests/suite.py', description=__doc__.split('\n\n')[0])
    parser.add_argument('--order', default='file',
                        help='as pytest --order (tests/conftest.py); a '
                        "random order's seed is drawn once for all parts")
    parser.add_argument('--parts', type=int, default=6, metavar='N',
                        help='split the ordered modules into N processes')
    parser.add_argument('--lanes', type=int, default=2, metavar='L',
                        help='run L parts at a time')
    parser.add_argument('--isa', action='append', default=[],
                        help='run the numerical tests again under '
                        'DNNL_MAX_CPU_ISA=ISA (repeatable)')
    args = parser.parse_args(argv)
    if args.parts < 1 or args.lanes < 1:
        parser.error('--parts and --lanes take a number from 1 up')
    if not re.fullmatch(r'file|reverse|random(:\d+)?', args.order):
        parser.error(f'--order {args.order}: choose file, reverse, random '
                     'or random:SEED')
    if args.order == 'random':  # one seed for every part
        args.order = f'random:{int(time.time()) % 100000}'
    return args


def omp_threads(lanes):
    """OpenMP threads for each part: its share of this process's CPUs, or
    the user's OMP_NUM_THREADS."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') \
        else os.cpu_count() or 1
    return os.environ.get('OMP_NUM_THREADS', str(max(1, cpus // lanes)))


def jobs(args):
    """(title, command, extra environment, whether its skips count) of
    each process, in the order they start: the reruns repeat skips the
    suite has counted."""
    pytest = [sys.executable, '-m', 'pytest', '--order', args.order]
    found = [(f'part {k} of {args.parts} of the suite, order {args.order}',
              pytest + ['--shard', f'{k}/{args.parts}'], {}, True)
             for k in range(1, args.parts + 1)]
    found += [(f'the numerical tests under DNNL_MAX_CPU_ISA={isa}',
               pytest + ['-q', '-m', 'numerical'],
               {'DNNL_MAX_CPU_ISA': isa}, False)
              for isa in args.isa]
    return found


class Job:
    """One pytest process, its output in a file until it ends."""

    def __init__(self, title, command, env, counted, folder, number):
        self.title, self.counted = title, counted
        self.started = time.monotonic()
        self.log = open(os.path.join(folder, f'{number}.log'), 'w+')
        self.skips = os.path.join(folder, f'{number}.skips.json')
        self.proc = subprocess.Popen(
            command, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, **env, SKIP_COUNTS_VAR: self.skips},
            start_new_session=True)  # its children are stopped with it
        self.status = self.peak_gb = None

    def finished(self):
        """Whether the process has ended; then its exit status and peak
        resident memory (of it and its children) are kept."""
        if self.status is None:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                if self.status == NO_TESTS:  # more parts than modules
                    self.status = 0
                self.peak_gb = usage.ru_maxrss / 2**20  # KiB on Linux
        return self.status is not None

    def summary(self):
        minutes = (time.monotonic() - self.started) / 60
        how = 'stopped' if self.status == -signal.SIGTERM else \
            f'exit {self.status}' if self.status else 'passed'
        return f'{self.title}: {how} ({minutes:.1f} min, peak memory ' \
            f'{self.peak_gb or 0:.1f} GB)'

    def output(self):
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if not self.finished():
            os.killpg(self.proc.pid, signal.SIGTERM)
            os.waitpid(self.proc.pid, 0)
            self.status = -signal.SIGTERM

    def skip_counts(self):
        try:
            with open(self.skips) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}


def run(todo, lanes, live=None):
    """Run the jobs (title, command, environment, counted), `lanes` at a
    time, each printed whole as it ends; 0 if all passed, else the first
    failure's exit status (1 for a signal), the others stopped."""
    live = sys.stdout.isatty() if live is None else live
    clear = '\r\033[K' if live else ''  # the status line, erased
    total, ended, running, skips, status = len(todo), 0, [], {}, 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix='gluon-fcn-suite-') as folder:
        try:
            while (todo and not status) or running:
                while todo and not status and len(running) < lanes:
                    running.append(Job(*todo.pop(0), folder,
                                       total - len(todo)))
                time.sleep(0.2)
                if live:  # a status line, rewritten until a part ends
                    print(f'\r{progress(ended, total, running)}', end='',
                          flush=True)
                for job in [j for j in running if j.finished()]:
                    running.remove(job)
                    ended += 1
                    print(f'{clear}== [{ended}/{total}] {job.summary()}\n'
                          f'{job.output()}', flush=True)
                    if job.status and not status:
                        status = job.status if job.status > 0 else 1
                        for other in running:
                            other.stop()
                    if job.counted:
                        for cause, n in job.skip_counts().items():
                            skips[cause] = skips.get(cause, 0) + n
        finally:
            for job in running:
                job.stop()
    minutes = (time.monotonic() - started) / 60
    if status:
        print(f'== stopped at the first failure ({minutes:.1f} min)')
        return status
    print(f'== all {total} passed in {minutes:.1f} min')
    print(skip_line(skips, 'in the suite'))
    return 0


def progress(ended, total, running):
    bar = '#' * ended + '.' * (total - ended)
    now = time.monotonic()
    return f'[{bar}] {ended}/{total} ended; running: ' + ', '.join(
        f'{job.title.split(",")[0]} ({(now - job.started) / 60:.1f} min)'
        for job in running)


def skip_line(counts, where=None):
    """The line that counts skips ({cause: n}) by cause, most first: a
    part's (conftest), or with `where='in the suite'` the whole suite's."""
    head = f'skipped {where}' if where else 'skipped'
    if not counts:
        return f'{head}: none'
    causes = ', '.join(f'{n} {cause}' for cause, n in
                       sorted(counts.items(), key=lambda c: -c[1]))
    return f'{head} by cause: {causes}'


def main(argv=None):
    args = parse_args(argv)
    env = {'OMP_NUM_THREADS': omp_threads(args.lanes)}
    todo = [(title, command, {**env, **extra}, counted)
            for title, command, extra, counted in jobs(args)]
    print(f'== {len(todo)} processes, {args.lanes} at a time, '
          f'OMP_NUM_THREADS={env["OMP_NUM_THREADS"]} each', flush=True)
    try:
        return run(todo, args.lanes)
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
