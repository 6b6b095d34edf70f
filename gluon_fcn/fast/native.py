"""gluon-fcn's CPU operators (`csrc/fcn_ops.cc`), compiled on first use
and loaded into MXNet through its external-operator API (`lib_api.h`,
`mx.library.load`), as `torch.utils.cpp_extension.load` does for PyTorch.

- `fcn_pixel_ce`: the chapter's loss, softmax cross-entropy over the
  channels of (B, C, H, W) logits, fused forward and backward.
- `fcn_upsample`: the quadrant-split transposed convolution
  (`gluon_fcn.fast.upsample`) in one pass, forward and backward.
- `fcn_blocks_to_image`: the last step of the same split computed as a
  GEMM, for strides `fcn_upsample` has no kernel for.

The library is built once per machine, MXNet version, source and flags,
with the C++ compiler `$CXX` (default g++), into `$GLUON_FCN_CACHE`
(default ~/.cache/gluon_fcn). `$GLUON_FCN_CXXFLAGS` adds flags, e.g.
'-fsanitize=address' for an AddressSanitizer build (README). Where the
build fails (no compiler, not Linux), `load` warns once and returns
False, as it does silently with `GLUON_FCN_NATIVE=0`; gluon-fcn then
computes the same things with MXNet's own operators, slower.
"""
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import warnings

import mxnet as mx
import numpy as onp

from ..core.files import atomic_path
from ..threads import cpuinfo_field

SOURCE = os.path.join(os.path.dirname(__file__), 'csrc', 'fcn_ops.cc')
FLAGS = ['-std=c++17', '-O3', '-march=native', '-fopenmp',
         '-fno-math-errno', '-fPIC']
WARNINGS = ['-Wall', '-Wextra']  # fcn_ops.cc compiles clean with them
_loaded = None  # None: not tried yet; then True or False


def mxnet_dir():
    return os.path.dirname(mx.__file__)


def cpu_flags():
    """The CPU's feature flags (-march=native compiles for them)."""
    return cpuinfo_field('flags') or platform.processor()


def cpu_model():
    """The CPU's model name, as the figures name the machine."""
    return (cpuinfo_field('model name') or platform.processor() or
            platform.machine())


def extra_flags():
    """`$GLUON_FCN_CXXFLAGS`, split as a shell would."""
    return shlex.split(os.environ.get('GLUON_FCN_CXXFLAGS', ''))


def library_path(cache=None):
    """Where the library for this source, MXNet, CPU and flags is cached."""
    cache = cache or os.environ.get('GLUON_FCN_CACHE') or \
        os.path.join(os.path.expanduser('~'), '.cache', 'gluon_fcn')
    key = hashlib.sha1()
    for part in (open(SOURCE, 'rb').read(), mx.__version__.encode(),
                 ' '.join(FLAGS + WARNINGS + extra_flags()).encode(),
                 platform.machine().encode(), cpu_flags().encode()):
        key.update(part)
    return os.path.join(cache, f'libfcn_ops-{key.hexdigest()[:12]}.so')


def compile_commands(out, obj):
    """The two compiler runs that make the library `out`: MXNet's side of
    the API (`lib_api.cc`, to the object `obj`, its warnings not ours),
    then the operators, warnings on, linked with it."""
    root = mxnet_dir()
    cxx, extra = os.environ.get('CXX', 'g++'), extra_flags()
    include = ['-isystem', os.path.join(root, 'include'),
               '-isystem', os.path.join(root, 'include', 'mxnet')]
    api = [cxx, *FLAGS, *extra, '-w', '-c',
           os.path.join(root, 'src', 'lib_api.cc'), *include, '-o', obj]
    ops = [cxx, *FLAGS, *WARNINGS, *extra, '-shared', SOURCE, obj,
           *include, '-o', out]
    if platform.machine() == 'x86_64':
        ops.append('-lmvec')  # glibc's vector expf
    return [api, ops]


def build(path):
    """Compile the library to `path`, atomically (`atomic_path`):
    processes building at once each write their own file and the last
    rename wins. Returns the compiler's warnings ('' when clean)."""
    warned = []
    with atomic_path(path) as tmp, tempfile.TemporaryDirectory() as work:
        for cmd in compile_commands(tmp, os.path.join(work, 'lib_api.o')):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(first_error(proc.stderr))
            warned.append(proc.stderr)
    return ''.join(warned).strip()


def first_error(stderr):
    """The line of the compiler's output that says what failed."""
    lines = stderr.strip().splitlines() or ['failed']
    return next((line for line in lines if 'error' in line), lines[-1])


def load():
    """Build (if needed) and load the operators; True when they are
    usable. Tried once per process."""
    global _loaded
    if _loaded is None:
        _loaded = _try_load()
    return _loaded


def _try_load():
    if os.environ.get('GLUON_FCN_NATIVE', '1') == '0':
        return False
    try:
        path = library_path()
        if not os.path.isfile(path):
            if shutil.which(os.environ.get('CXX', 'g++')) is None:
                raise RuntimeError('no C++ compiler (set CXX)')
            build(path)
        mx.library.load(path, verbose=False)
        return True
    except Exception as e:  # any failure: MXNet's operators instead
        warnings.warn(f'gluon-fcn: native operators unavailable ({e}); '
                      'using the chapter layers and MXNet operators '
                      '(slower)', RuntimeWarning, stacklevel=3)
        return False


def usable(x):
    """Whether the operators can compute on array `x`: loaded, on the
    CPU, float32."""
    return (x.context.device_type == 'cpu' and x.dtype == onp.float32
            and load())
