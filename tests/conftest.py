"""Shared fixtures: tiny, offline, seeded, CPU-only; the order the tests
run in (`--order`)."""
import contextlib
import json
import os
import pathlib
import random
import time

import mxnet as mx
import pytest
from mxnet import npx

import gluon_fcn  # noqa: F401  (before MXNet loads: a thread per core)
from gluon_fcn.core.zoo import import_gluoncv
from gluon_fcn.errors import FCNError
from suite import SKIP_COUNTS_VAR, skip_line

try:
    import_gluoncv()  # torch hidden while it imports (gluon_fcn.core.zoo)
except FCNError:
    pass  # not installed: the tests that need it skip

# the tests' default mode, the 2nd edition's, so that module and session
# fixtures build NumPy-mode blocks; `mxnet_mode` switches per test
npx.set_np()

HERE = pathlib.Path(__file__).resolve().parent
ORDERS = 'file (default), reverse (the modules last to first), random ' \
    '(modules, then the tests in each, shuffled by a seed from the clock) ' \
    'or random:SEED'


def pytest_addoption(parser):
    parser.addoption('--order', default='file', help=ORDERS)
    parser.addoption('--shard', default='1/1', metavar='K/N',
                     help='run the K-th of N parts of the modules, of '
                     'about equal cost (make test: a process each)')


def shard(spec):
    """(K, N) of --shard K/N, 1 <= K <= N."""
    k, _, n = spec.partition('/')
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise pytest.UsageError(f'--shard {spec}: give K/N, 1 <= K <= N')
    return int(k), int(n)


def order_seed(order):
    """None for 'file' and 'reverse', the seed of 'random[:SEED]'."""
    if order in ('file', 'reverse'):
        return None
    kind, _, seed = order.partition(':')
    if kind != 'random' or (seed and not seed.isdigit()):
        raise pytest.UsageError(f'--order {order}: choose {ORDERS}')
    return int(seed) if seed else int(time.time()) % 100000


def pytest_configure(config):
    shard(config.getoption('--shard'))
    seed = order_seed(config.getoption('--order'))
    if seed is not None:
        config.option.order = f'random:{seed}'


def pytest_report_header(config):
    return f'test order: {config.getoption("--order")} (rerun it with ' \
        f'--order {config.getoption("--order")})'


# module -> the module it runs beside, in one process: they share a
# session's costly results (each lesson runs once a session,
# notebook_harness.run_lesson)
SHARED_WITH = {'tests/test_lessons.py': 'tests/test_docs.py'}


def pytest_ignore_collect(collection_path, config):
    """With --shard K/N, only the K-th of N parts of the ordered modules
    is collected (`arrange`): MXNet keeps the memory a process has used, which
    grew past 19 GB over the whole suite in one process (README,
    "Development"), and importing the others would only slow the part."""
    if collection_path.resolve().parent == HERE and \
            collection_path.match('test_*.py'):
        return collection_path.name not in part_modules(config)
    return None


def part_modules(config):
    """The file names of the modules of this --shard part (once a run)."""
    if not hasattr(config, '_part_modules'):
        names = sorted(p.name for p in HERE.glob('test_*.py'))
        ids = arrange([f'tests/{name}' for name in names],
                      config.getoption('--order'),
                      *shard(config.getoption('--shard')))
        config._part_modules = {os.path.basename(i) for i in ids}
    return config._part_modules


def pytest_collection_modifyitems(config, items):
    """Tests of one module stay together (module fixtures are built once);
    the modules, and the tests within each, move as --order says."""
    by_id = {item.nodeid: item for item in items}
    items[:] = [by_id[nodeid] for nodeid in
                arrange(list(by_id), config.getoption('--order'))]


def arrange(nodeids, order, k=1, n=1):
    """The test ids of part K of N, in the order they run: the modules
    (those of SHARED_WITH together) in groups, reordered as `order` says
    with the tests of each module, then dealt into N parts of about equal
    cost (`deal`)."""
    modules = {}
    for nodeid in nodeids:
        modules.setdefault(nodeid.split('::')[0], []).append(nodeid)
    groups = {}  # the first module of each group -> its modules' tests
    for module, tests in modules.items():
        groups.setdefault(SHARED_WITH.get(module, module), []).append(tests)
    groups = list(groups.values())
    if order == 'reverse':
        groups.reverse()
    elif order != 'file':
        rng = random.Random(order_seed(order))
        rng.shuffle(groups)
        for group in groups:
            rng.shuffle(group)
            for tests in group:
                rng.shuffle(tests)
    return [nodeid for group in deal(groups, n)[k - 1] for tests in group
            for nodeid in tests]


# The rough cost of the costliest modules, in seconds of a part's time on
# 2 cores (README, results log, `make test` 2026-12-05); any other module
# costs LIGHT. Only the parts' balance rests on it: costly modules in
# one part made it the last to end, and the memory MXNet keeps from each
# added up (13 GB).
COST = {'test_docs.py': 75, 'test_precision.py': 70, 'test_cli.py': 55,
        'test_reliability.py': 50, 'test_heads.py': 45, 'test_dist.py': 45,
        'test_compare.py': 35, 'test_mixed.py': 35, 'test_benchmark.py': 35,
        'test_train.py': 30, 'test_native.py': 30, 'test_faults.py': 30,
        'test_torch_port.py': 15, 'test_export.py': 15, 'test_suite.py': 15,
        'test_torchvision_fcn.py': 10, 'test_reproduce.py': 10,
        'test_editions.py': 10}
LIGHT = 5


def group_cost(group):
    return sum(COST.get(os.path.basename(tests[0].split('::')[0]), LIGHT)
               for tests in group)


def deal(groups, n):
    """The groups in N parts of about equal cost: the costliest first, each
    to the part that costs least so far (no part exceeds another by more
    than one group's cost); each part keeps the groups' order."""
    parts = [[] for _ in range(n)]
    totals = [0] * n
    for index in sorted(range(len(groups)),
                        key=lambda i: -group_cost(groups[i])):
        least = totals.index(min(totals))
        parts[least].append(index)
        totals[least] += group_cost(groups[index])
    return [[groups[i] for i in sorted(part)] for part in parts]


# what a skip's reason says -> the cause `make test` counts it under;
# each skip in the suite names one (test_skips)
SKIP_CAUSES = (('real VOC files not found', 'no ../shared real VOC files'),
               ("'torch'", 'no torch'),
               ("'torchvision'", 'no torchvision'),
               ('torchvision is not installed', 'no torchvision'),
               ("'onnxruntime'", 'no onnxruntime'),
               ('native operators', 'no compiler (native operators)'),
               ('has no units for', 'no bf16/VNNI units'),
               ('has no bf16 units', 'no bf16/VNNI units'),
               ('setpriv', 'not root, or root without setpriv'),
               ('tmpfs', 'no tmpfs'),
               ("'d2lzh'", "no d2lzh (the 1st edition's library)"),
               ("'d2l", "no d2l (the 2nd edition's library)"),
               ("'sklearn'", 'no scikit-learn'),
               ("'gluoncv", 'no gluoncv'),
               ("'cv2'", 'no OpenCV'),
               ("'nbclient'", 'no notebook tools'),
               ("'ipykernel'", 'no notebook tools'),
               ("'nbconvert'", 'no notebook tools'),
               ('no browser', 'no Chromium'),
               ('distributed kvstore', 'no distributed kvstore in MXNet'),
               ('AddressSanitizer', 'no AddressSanitizer runtime'),
               ('no AVX-512', 'no AVX-512 (the generic kernels are '
                'this CPU\'s)'),
               ('objdump', 'no objdump (binutils)'),
               ('no oneDNN', 'an MXNet without oneDNN (MKLDNN)'))


def skip_cause(reason):
    return next((cause for key, cause in SKIP_CAUSES if key in reason),
                reason)


def pytest_unconfigure(config):
    """The run's last line counts the skips by cause, so that a run that
    could not check something says what (-ra lists each above)."""
    reporter = config.pluginmanager.get_plugin('terminalreporter')
    if reporter is None:
        return
    counts = {}
    for report in reporter.stats.get('skipped', []):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) \
            else str(report.longrepr)
        cause = skip_cause(reason.removeprefix('Skipped: '))
        counts[cause] = counts.get(cause, 0) + 1
    reporter.write_line(skip_line(counts))
    if os.environ.get(SKIP_COUNTS_VAR):  # the runner sums the parts'
        with open(os.environ[SKIP_COUNTS_VAR], 'w') as f:
            json.dump(counts, f)


VOC_MINI = os.path.join(os.path.dirname(__file__), '..', '..', 'shared',
                        'data', 'voc-mini')


def in_mode(legacy):
    """A generator that switches to legacy (or NumPy) mode, yields, then
    restores the mode it found (`mxnet_mode`, tested in test_editions)."""
    was = mx.util.is_np_array()
    if legacy:
        npx.reset_np()
    else:
        npx.set_np()
    yield
    if was:
        npx.set_np()
    else:
        npx.reset_np()


@pytest.fixture(autouse=True)
def mxnet_mode(request):
    """Each test runs in NumPy mode (the 2nd edition's), or in legacy mode
    where it asks for the `legacy_mode` fixture; the mode it found is
    restored after, so neither edition leaks into the other."""
    yield from in_mode('legacy_mode' in request.fixturenames)


@pytest.fixture
def legacy_mode():
    """Marks a test to run with MXNet's NumPy mode off (see mxnet_mode)."""
    assert not mx.util.is_np_array()


@pytest.fixture(scope='session')
def voc_mini():
    """The five real VOC2012 pairs beside the checkout, if present."""
    path = os.path.abspath(os.environ.get('VOC_MINI', VOC_MINI))
    if not os.path.isdir(os.path.join(path, 'JPEGImages')):
        pytest.skip(f'real VOC files not found at {path}')
    return path


@pytest.fixture(scope='session')
def d2l():
    """d2l 1.0.3's MXNet functions, the reference (installed --no-deps)."""
    return pytest.importorskip('d2l.mxnet')


@pytest.fixture(scope='session')
def synth_voc(tmp_path_factory):
    """A small synthetic VOC-layout dataset with images of 96..200 px."""
    from gluon_fcn.core.synthetic import make_synthetic_voc
    out = tmp_path_factory.mktemp('synth')
    sizes = ((128, 160), (160, 192), (96, 128), (160, 224))
    return str(make_synthetic_voc(str(out), num_train=24, num_val=12,
                                  seed=0, sizes=sizes, progress=False))


# the flags of the tiny runs: one device, small crops and batches
TINY = ['--crop', '64,64', '--batch-size', '2', '--seed', '0',
        '--devices', 'cpu:0']


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture(scope='session')
def tiny_voc(tmp_path_factory):
    """8 train and 4 val synthetic images of 64x64 and 96x80 (4 batches
    of TINY an epoch), written under umask 022."""
    from gluon_fcn.core.synthetic import make_synthetic_voc
    out = str(tmp_path_factory.mktemp('tiny') / 'voc')
    with umask(0o022):
        return str(make_synthetic_voc(out, num_train=8, num_val=4, seed=0,
                                      sizes=((64, 64), (96, 80)),
                                      progress=False))


@pytest.fixture(scope='session')
def tiny_run(tiny_voc, tmp_path_factory):
    """The run the tests that need any trained run share: one epoch of
    the chapter's net on tiny_voc with TINY, written under umask 022.
    Tests read it, or change a copy."""
    from gluon_fcn.app.cli import main
    out = str(tmp_path_factory.mktemp('tiny_run') / 'run')
    with umask(0o022):
        assert main(['train', '--data', tiny_voc, '--out', out,
                     '--epochs', '1'] + TINY) == 0
    return out
