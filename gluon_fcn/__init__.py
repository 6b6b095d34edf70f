"""gluon-fcn: Fully Convolutional Networks in MXNet Gluon, as in d2l.

The package is layered (README, "The layers"): the book in both MXNet
editions (`gluon_fcn.d2l`, the 2nd edition; `gluon_fcn.v1`, d2lzh), then
`core`, `fast`, `compare`, `dist` and `app`. Importing it changes no MXNet mode:
the 2nd edition's readers call `npx.set_np()` themselves, as the book's
first cell does, and every function works in the mode of its caller.

Imported before MXNet, it gives MXNet one OpenMP thread per physical core
(`threads.default_omp_threads`; MXNet's own default is half the logical
CPUs), unless OMP_NUM_THREADS is set, and lets its oneDNN use AMX for
bf16 and int8 where Linux grants the tiles (`threads.enable_amx`).
"""
from .threads import default_omp_threads, enable_amx

default_omp_threads()
enable_amx()

__version__ = '0.2.0'

# the package's face, imported on first use so that `import gluon_fcn`
# (and `from gluon_fcn import v1`) loads no more than it needs
_FACE = {'build_fcn': 'core.model', 'load_run': 'app.loading',
         'optimize_for_inference': 'fast.inference',
         'accelerate': 'fast.upsample', 'FCNError': 'errors',
         'load_pretrained': 'core.zoo'}


def __getattr__(name):
    if name in _FACE:
        import importlib
        module = importlib.import_module(f'.{_FACE[name]}', __name__)
        return getattr(module, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(list(globals()) + list(_FACE))
