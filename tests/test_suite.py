"""`make test`'s runner (tests/suite.py) and the order and parts of the
suite (conftest.arrange): every test runs once, parts side by side print
whole, the first failure stops the rest, and the skips are counted."""
import os
import shutil
import subprocess
import sys

import pytest

import conftest
import suite
from conftest import SHARED_WITH, arrange

HERE = os.path.dirname(os.path.abspath(__file__))
# a suite of 9 modules (the two of SHARED_WITH among them), 3 tests each
MODULES = sorted({f'tests/test_m{k}.py' for k in range(7)} |
                 set(SHARED_WITH) | set(SHARED_WITH.values()))
NODEIDS = [f'{m}::test_{t}' for m in MODULES for t in 'abc']


def module(nodeid):
    return nodeid.split('::')[0]


@pytest.mark.parametrize('order', ['file', 'reverse', 'random:7'])
@pytest.mark.parametrize('n', [1, 3, 4, 12])
def test_the_parts_run_every_test_once_with_shared_modules_together(order,
                                                                    n):
    parts = [arrange(NODEIDS, order, k, n) for k in range(1, n + 1)]
    ran = [nodeid for part in parts for nodeid in part]
    assert sorted(ran) == sorted(NODEIDS)
    for part in parts:  # each module's tests run one after another
        runs = [module(x) for k, x in enumerate(part)
                if k == 0 or module(part[k - 1]) != module(x)]
        assert len(runs) == len(set(runs)), part
    for a, b in SHARED_WITH.items():
        assert [a in map(module, part) for part in parts] == \
            [b in map(module, part) for part in parts]


@pytest.mark.parametrize('order', ['file', 'reverse', 'random:7'])
def test_the_parts_cost_about_the_same(order, monkeypatch):
    """No part costs more than another by more than one group's cost,
    and the two costliest modules never share a part."""
    costly = {'test_m0.py': 90, 'test_m1.py': 80, 'test_m2.py': 30}
    monkeypatch.setattr(conftest, 'COST', costly)
    for n in (2, 3, 4):
        parts = [arrange(NODEIDS, order, k, n) for k in range(1, n + 1)]
        totals = [sum(conftest.group_cost([[m]]) for m in
                      {module(x) for x in part}) for part in parts]
        assert max(totals) - min(totals) <= 90, totals
        assert not any('tests/test_m0.py::test_a' in part and
                       'tests/test_m1.py::test_a' in part for part in parts)


def test_orders_move_modules_and_a_seed_repeats_its_order():
    assert arrange(NODEIDS, 'file') == NODEIDS
    reverse = arrange(NODEIDS, 'reverse')
    assert module(reverse[0]) == MODULES[-1] and \
        reverse[:3] == NODEIDS[-3:]
    assert arrange(NODEIDS, 'random:7') == arrange(NODEIDS, 'random:7')
    assert arrange(NODEIDS, 'random:7') != arrange(NODEIDS, 'random:8')


def suite_copy(folder, modules):
    """A folder of this suite's conftest (and the runner it imports) and
    `modules`, each of 3 tests."""
    for name in ('conftest.py', 'suite.py'):
        shutil.copy(os.path.join(HERE, name), folder)
    (folder / 'pytest.ini').write_text('[pytest]\n')
    for name in modules:
        (folder / name).write_text(''.join(
            f'def test_{t}():\n    pass\n\n' for t in 'abc'))


def collected(folder, *flags):
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '--collect-only', '-q',
         '-p', 'no:cacheprovider', *flags, str(folder)],
        capture_output=True, text=True, cwd=folder)
    assert proc.returncode in (0, suite.NO_TESTS), proc.stdout[-2000:]
    return [line for line in proc.stdout.splitlines() if '::' in line]


def test_a_part_collects_only_its_own_modules(tmp_path):
    """--shard K/N decides before importing: a module of another part is
    not even imported (here: one that would fail to)."""
    names = [os.path.basename(m) for m in MODULES]
    suite_copy(tmp_path, names)
    parts = [collected(tmp_path, '--order', 'random:3', '--shard', f'{k}/3')
             for k in (1, 2, 3)]
    ran = sum(parts, [])  # every test of the 9 modules, once
    assert len(ran) == len(set(ran)) == 27 and all(parts)
    for a, b in SHARED_WITH.items():
        assert [any(os.path.basename(a) in x for x in part)
                for part in parts] == \
            [any(os.path.basename(b) in x for x in part) for part in parts]
    other = next(n for n in names if not any(n in x for x in parts[0]))
    (tmp_path / other).write_text('raise ImportError("imported")\n')
    assert collected(tmp_path, '--order', 'random:3', '--shard', '1/3') \
        == parts[0]


def python(code):
    return [sys.executable, '-c', code]


def job(title, code, counted=True):
    return (title, python(code), {}, counted)


def test_parts_run_side_by_side_and_print_whole(tmp_path, capsys):
    """Each part waits for a file the other writes once it has started:
    both end only if they run at once (within 60 s)."""
    a, b = tmp_path / 'a', tmp_path / 'b'
    wait = 'import os, time; open({mine!r}, "w"); print("{name} 1"); ' \
        't = time.time()\nwhile not os.path.exists({other!r}) and ' \
        'time.time() - t < 60: time.sleep(0.05)\n' \
        'print("{name} 2"); assert os.path.exists({other!r})'
    assert suite.run([
        job('first', wait.format(mine=str(a), other=str(b), name='A')),
        job('second', wait.format(mine=str(b), other=str(a), name='B'))],
        lanes=2, live=False) == 0
    out = capsys.readouterr().out
    assert 'A 1\nA 2\n' in out and 'B 1\nB 2\n' in out
    assert '== [1/2]' in out and '== [2/2]' in out
    assert 'first: passed' in out and 'second: passed' in out
    assert '== all 2 passed' in out and '\r' not in out


def test_on_a_terminal_a_status_line_shows_the_parts_running(capsys):
    assert suite.run([job('part 1 of 1, order file', 'pass')], lanes=1,
                     live=True) == 0
    out = capsys.readouterr().out
    assert '\r[.] 0/1 ended; running: part 1 of 1 (0.0 min)' in out
    assert '\r\033[K== [1/1] part 1 of 1, order file: passed' in out


def test_the_first_failure_stops_the_rest_and_is_the_exit_status(tmp_path,
                                                                 capsys):
    started = tmp_path / 'started'
    status = suite.run([
        job('sleeper', f'open({str(started)!r}, "w"); '
            'import time; time.sleep(600)'),
        job('failing', 'import os, sys, time\n'
            f'while not os.path.exists({str(started)!r}): time.sleep(0.05)\n'
            'print("it broke"); sys.exit(3)'),
        job('never', 'print("never ran")')], lanes=2, live=False)
    out = capsys.readouterr().out
    assert status == 3
    assert 'failing: exit 3' in out and 'it broke' in out
    assert 'sleeper: stopped' in out
    assert 'never' not in out
    assert '== stopped at the first failure' in out


def test_a_part_with_no_tests_passes_and_a_signal_fails(capsys):
    assert suite.run([job('empty', 'import sys; sys.exit(5)')], lanes=1,
                     live=False) == 0
    assert suite.run([job('killed', 'import os, signal; '
                          'os.kill(os.getpid(), signal.SIGKILL)')],
                     lanes=1, live=False) == 1


def test_the_skips_of_real_parts_are_counted_by_cause(tmp_path, capsys):
    """Two pytest processes with this suite's conftest: their skips by
    cause, summed over the counted parts only (a rerun repeats them)."""
    suite_copy(tmp_path, [])
    (tmp_path / 'test_skipping.py').write_text(
        'import pytest\n\n'
        'def test_voc():\n'
        '    pytest.skip("real VOC files not found at /nowhere")\n\n'
        'def test_torch():\n'
        '    pytest.importorskip("torch_that_is_not_there")\n\n'
        'def test_runs():\n'
        '    assert True\n')
    part = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
            str(tmp_path)]
    todo = [('part 1', part, {}, True), ('part 2', part, {}, True),
            ('rerun', part, {}, False)]
    assert suite.run(todo, lanes=2, live=False) == 0
    out = capsys.readouterr().out
    assert out.count('skipped by cause: 1 no ../shared real VOC files, '
                     "1 could not import 'torch_that_is_not_there'") == 3
    assert out.rstrip().splitlines()[-1] == (
        'skipped in the suite by cause: 2 no ../shared real VOC files, '
        "2 could not import 'torch_that_is_not_there': No module named "
        "'torch_that_is_not_there'")


def test_jobs_share_one_random_seed_and_reruns_are_not_counted():
    args = suite.parse_args(['--order', 'random', '--parts', '3',
                             '--isa', 'AVX2'])
    found = suite.jobs(args)
    orders = {command[command.index('--order') + 1]
              for _, command, _, _ in found}
    assert len(orders) == 1 and orders.pop().startswith('random:')
    assert [counted for *_, counted in found] == [True] * 3 + [False]
    assert found[-1][2] == {'DNNL_MAX_CPU_ISA': 'AVX2'}
    assert [c[c.index('--shard') + 1] for _, c, _, counted in found
            if counted] == ['1/3', '2/3', '3/3']


@pytest.mark.parametrize('flags', [['--parts', '0'], ['--lanes', 'two'],
                                   ['--order', 'sideways']])
def test_a_bad_flag_is_one_line_and_exit_2(flags):
    proc = subprocess.run([sys.executable, os.path.join(HERE, 'suite.py'),
                           *flags], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        'tests/suite.py: error: ')
    assert 'Traceback' not in proc.stderr


def test_each_part_gets_its_share_of_the_cores(monkeypatch):
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 1, 2, 3})
    assert suite.omp_threads(2) == '2' and suite.omp_threads(8) == '1'
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    assert suite.omp_threads(2) == '3'
