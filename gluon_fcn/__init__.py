"""gluon-fcn: Fully Convolutional Networks in MXNet Gluon, as in d2l.

Like d2l 1.0, the package uses MXNet's NumPy interface: importing it turns
NumPy mode on (``npx.set_np()``), which the chapter's code does first too.
Imported before MXNet, it also gives MXNet one OpenMP thread per physical
core (`threads.default_omp_threads`; MXNet's own default is half the
logical CPUs), unless OMP_NUM_THREADS is set.
"""
from .threads import default_omp_threads

default_omp_threads()

from mxnet import npx  # noqa: E402  (after the thread count is set)

npx.set_np()

__version__ = '0.1.0'
