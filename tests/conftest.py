"""Shared fixtures: tiny, offline, seeded, CPU-only."""
import os

import mxnet as mx
import pytest
from mxnet import npx

import gluon_fcn  # noqa: F401  (before MXNet loads: a thread per core)
from gluon_fcn.core.zoo import import_gluoncv
from gluon_fcn.errors import FCNError

try:
    import_gluoncv()  # torch hidden while it imports (gluon_fcn.core.zoo)
except FCNError:
    pass  # not installed: the tests that need it skip

# the tests' default mode, the 2nd edition's, so that module and session
# fixtures build NumPy-mode blocks; `mxnet_mode` switches per test
npx.set_np()

VOC_MINI = os.path.join(os.path.dirname(__file__), '..', '..', 'shared',
                        'data', 'voc-mini')


@pytest.fixture(autouse=True)
def mxnet_mode(request):
    """Each test runs in NumPy mode (the 2nd edition's), or in legacy mode
    where it asks for the `legacy_mode` fixture; the mode it found is
    restored after, so neither edition leaks into the other."""
    was = mx.util.is_np_array()
    if 'legacy_mode' in request.fixturenames:
        npx.reset_np()
    else:
        npx.set_np()
    yield
    if was:
        npx.set_np()
    else:
        npx.reset_np()


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
