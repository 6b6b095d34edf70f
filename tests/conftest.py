"""Shared fixtures: tiny, offline, seeded, CPU-only."""
import os

import pytest

import gluon_fcn  # noqa: F401  (turns MXNet's NumPy mode on)

VOC_MINI = os.path.join(os.path.dirname(__file__), '..', '..', 'shared',
                        'data', 'voc-mini')


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
    from gluon_fcn.synthetic import make_synthetic_voc
    out = tmp_path_factory.mktemp('synth')
    sizes = ((128, 160), (160, 192), (96, 128), (160, 224))
    return str(make_synthetic_voc(str(out), num_train=24, num_val=12,
                                  seed=0, sizes=sizes, progress=False))
