"""What this CPU offers each precision: AMX, AVX-512 BF16, VNNI or none,
and where a precision is known to run slower than float32 on it.

bf16 is faster than float32 on AMX (Intel Xeon 4th generation on), and on
AMD's AVX-512 BF16 (the AMD EPYC here); on Intel's AVX-512 BF16 without
AMX (Cooper Lake, or a Xeon whose AMX Linux did not grant) oneDNN's bf16
convolutions ran slower than float32 (README, "Reduced precision").
int8 ran faster than float32 on AMX and on AVX-512 VNNI; on AVX-512
without VNNI it runs (oneDNN's AVX-512BW kernels), not measured here.

`GLUON_FCN_CPU` fakes the CPU for these choices (not for compiling the
native operators), so that the paths this CPU cannot take can be tried
and tested: its vendor id and flags as /proc/cpuinfo names them, e.g.
'GenuineIntel avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16
amx_int8' (a faked AMX counts as granted; the vendor defaults to
GenuineIntel). The fake decides the paths only: the kernels oneDNN runs
are this CPU's.
"""
import collections
import os

import mxnet as mx

from .. import threads
from .native import cpu_flags, cpu_model

FAKE_VAR = 'GLUON_FCN_CPU'
VENDORS = ('GenuineIntel', 'AuthenticAMD')
# the CPU flags (/proc/cpuinfo) each precision runs on, best first, and
# the units they name
UNITS = {'fp32': (('avx512f', 'AVX-512'), ('avx2', 'AVX2'),
                  ('sse2', 'SSE2')),
         'bf16': (('amx_bf16', 'AMX'), ('avx512_bf16', 'AVX-512 BF16')),
         'int8': (('amx_int8', 'AMX'), ('avx512_vnni', 'AVX-512 VNNI'),
                  ('avx_vnni', 'AVX-VNNI'), ('avx512bw', 'AVX-512'))}

CPU = collections.namedtuple('CPU', 'vendor flags amx')
CPU.__doc__ = """A CPU as the precision paths see it: its vendor id, its
flags (a frozenset) and whether oneDNN may run AMX on it."""


def amx_allowed():
    """Whether oneDNN may run AMX in this process (the tiles granted and
    the ISA raised before MXNet loaded, `threads.enable_amx`)."""
    return os.environ.get(threads.ISA_VAR) == threads.AMX_ISA


def fake_cpu(spec):
    """The `CPU` that `GLUON_FCN_CPU` describes ('VENDOR flag flag ...')."""
    words = spec.split()
    vendor = next((w for w in words if w in VENDORS), VENDORS[0])
    flags = frozenset(words) - {vendor}
    return CPU(vendor, flags, any(f.startswith('amx_') for f in flags))


def this_cpu():
    """This machine's `CPU`, or the one `GLUON_FCN_CPU` fakes."""
    fake = os.environ.get(FAKE_VAR)
    if fake is not None:
        return fake_cpu(fake)
    return CPU(threads.cpuinfo_field('vendor_id'),
               frozenset(cpu_flags().split()),
               amx_allowed())


def precision_units(precision, cpu=None):
    """The units `precision` ('fp32', 'bf16', 'int8') runs on ('AMX',
    'AVX-512 BF16', 'AVX-512 VNNI', ...; for fp32 the widest vectors), or
    None where the CPU has none for bf16 or int8. `cpu`: this one's."""
    cpu = cpu or this_cpu()
    for flag, units in UNITS[precision]:
        if flag in cpu.flags and (cpu.amx or units != 'AMX'):
            return units
    return 'scalar float32' if precision == 'fp32' else None


def without_amx(cpu):
    """Why `cpu` runs no AMX, in a few words."""
    if {'amx_bf16', 'amx_int8'} & cpu.flags:
        return 'AMX not granted by Linux'
    return 'no AMX'


def slower_than_fp32(precision, cpu=None):
    """Why `precision` is known to run slower than float32 on this CPU
    (module docstring), in one phrase, or None."""
    cpu = cpu or this_cpu()
    if precision == 'bf16' and cpu.vendor != 'AuthenticAMD' and \
            precision_units('bf16', cpu) == 'AVX-512 BF16':
        return f'bf16 is slower than fp32 on this CPU ({without_amx(cpu)})'
    return None


def bf16_training_slower(cpu=None):
    """Why bf16 mixed-precision training is known to run slower than
    float32 on this CPU, in one phrase, or None: on every bf16 unit but
    AMX. Measured on AVX-512 BF16, on an AMD EPYC too, where bf16
    inference is the faster (README, results log: the benchmark's bf16
    training row)."""
    cpu = cpu or this_cpu()
    if precision_units('bf16', cpu) in (None, 'AMX'):
        return None
    return ('bf16 training is slower than fp32 on this CPU '
            f'({without_amx(cpu)})')


def no_units(precision):
    """Why a CPU without units for `precision` does not run it."""
    names = ' or '.join(flag for flag, _ in UNITS[precision])
    return f'this CPU has none of {names}'


def cpu_path(precision, ctx=None):
    """Where `precision` runs, for a line: 'AVX-512 VNNI, AMD EPYC' (a
    faked CPU says so), or the device off the CPU: 'gpu(0)'."""
    if ctx is not None and ctx.device_type != 'cpu':
        return str(ctx)
    fake = os.environ.get(FAKE_VAR)
    name = cpu_model() + (f' faked as {fake!r}' if fake is not None
                          else '')
    return f'{precision_units(precision)}, {name}'


def onednn():
    """Whether this MXNet has oneDNN (MKLDNN), which runs bf16 and int8."""
    return mx.runtime.Features().is_enabled('MKLDNN')
