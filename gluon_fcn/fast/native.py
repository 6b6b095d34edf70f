"""gluon-fcn's CPU operators (`csrc/fcn_ops.cc`), compiled on first use
and loaded into MXNet through its external-operator API (`lib_api.h`,
`mx.library.load`), as `torch.utils.cpp_extension.load` does for PyTorch.

- `fcn_pixel_ce`: the chapter's loss, softmax cross-entropy over the
  channels of (B, C, H, W) logits, fused forward and backward.
- `fcn_upsample`: the quadrant-split transposed convolution
  (`gluon_fcn.fast.upsample`) in one pass, forward and backward.
- `fcn_blocks_to_image`: the last step of the same split computed as a
  GEMM, for strides `fcn_upsample` has no kernel for.

The library is built once per machine, MXNet version and source, with the
C++ compiler `$CXX` (default g++), into `$GLUON_FCN_CACHE` (default
~/.cache/gluon_fcn). Where that fails (no compiler, not Linux), `load`
warns once and returns False, as it does silently with
`GLUON_FCN_NATIVE=0`; gluon-fcn then computes the same things with
MXNet's own operators, slower.
"""
import hashlib
import os
import platform
import shutil
import subprocess
import warnings

import mxnet as mx
import numpy as onp

from ..core.files import atomic_path

SOURCE = os.path.join(os.path.dirname(__file__), 'csrc', 'fcn_ops.cc')
FLAGS = ['-std=c++17', '-O3', '-march=native', '-fopenmp',
         '-fno-math-errno', '-shared', '-fPIC']
_loaded = None  # None: not tried yet; then True or False


def mxnet_dir():
    return os.path.dirname(mx.__file__)


def cpuinfo_field(name):
    """The first processor's `name` field in /proc/cpuinfo ('' where there
    is none)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return ''


def cpu_flags():
    """The CPU's feature flags (-march=native compiles for them)."""
    return cpuinfo_field('flags') or platform.processor()


def cpu_model():
    """The CPU's model name, as the figures name the machine."""
    return (cpuinfo_field('model name') or platform.processor() or
            platform.machine())


def library_path(cache=None):
    """Where the library for this source, MXNet and CPU is cached."""
    cache = cache or os.environ.get('GLUON_FCN_CACHE') or \
        os.path.join(os.path.expanduser('~'), '.cache', 'gluon_fcn')
    key = hashlib.sha1()
    for part in (open(SOURCE, 'rb').read(), mx.__version__.encode(),
                 ' '.join(FLAGS).encode(), platform.machine().encode(),
                 cpu_flags().encode()):
        key.update(part)
    return os.path.join(cache, f'libfcn_ops-{key.hexdigest()[:12]}.so')


def compile_command(out):
    root = mxnet_dir()
    cmd = [os.environ.get('CXX', 'g++'), *FLAGS, SOURCE,
           os.path.join(root, 'src', 'lib_api.cc'),
           '-I' + os.path.join(root, 'include'),
           '-I' + os.path.join(root, 'include', 'mxnet'), '-o', out]
    if platform.machine() == 'x86_64':
        cmd.append('-lmvec')  # glibc's vector expf
    return cmd


def build(path):
    """Compile the library to `path`, atomically (`atomic_path`):
    processes building at once each write their own file and the last
    rename wins."""
    with atomic_path(path) as tmp:
        proc = subprocess.run(compile_command(tmp), capture_output=True,
                              text=True)
        if proc.returncode:
            lines = (proc.stderr.strip() or 'failed').splitlines()
            raise RuntimeError(lines[-1])


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
