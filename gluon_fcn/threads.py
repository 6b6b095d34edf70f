"""What MXNet's CPU backend may use, decided before it loads: how many
OpenMP threads, and whether oneDNN may run AMX (`enable_amx`).

MXNet 1.9.1 (src/engine/openmp.cc) takes half the logical CPUs on x86,
assuming two hyper-threads a core; on machines without hyper-threading
(most cloud VMs, this project's 2-core CI) that leaves half the cores
idle, and training slows in proportion (README, results log, "Speed
against the d2l PyTorch port"). MXNet reads OMP_NUM_THREADS once, when it
loads, and
sets the OpenMP runtime it shares with oneDNN (and with torch, when both
are in one process) to that count.
"""
import ctypes
import logging
import os
import platform
import sys


CPUINFO = '/proc/cpuinfo'


def processors(cpuinfo=CPUINFO):
    """[{field: value}] of each logical CPU in /proc/cpuinfo, in order:
    the one reader of the file. [] where there is none (not Linux)."""
    found = []
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = (part.strip() for part in line.partition(':'))
                if key == 'processor' or not found:
                    found.append({})
                if key:
                    found[-1][key] = value
    except OSError:
        return []
    return [fields for fields in found if fields]


def cpuinfo_field(name, cpuinfo=CPUINFO):
    """The first logical CPU's `name` field in /proc/cpuinfo ('' where
    there is none)."""
    first = processors(cpuinfo)[:1]
    return first[0].get(name, '') if first else ''


def physical_cores(cpuinfo=CPUINFO):
    """Physical cores this process may run on: distinct (physical id, core
    id) pairs of the CPUs in its affinity mask; os.cpu_count() where
    /proc/cpuinfo cannot tell."""
    allowed = os.sched_getaffinity(0) if hasattr(os, 'sched_getaffinity') \
        else set(range(os.cpu_count() or 1))
    cores = set()
    for cpu in processors(cpuinfo):
        number = cpu.get('processor', '')
        if number.isdigit() and int(number) in allowed and 'core id' in cpu:
            cores.add((cpu.get('physical id', '0'), cpu['core id']))
    return len(cores) or len(allowed) or 1


def default_omp_threads():
    """Set OMP_NUM_THREADS to the physical cores unless the user has set
    it (or MXNET_OMP_MAX_THREADS); takes effect only before MXNet loads.
    Returns the value in force."""
    if 'MXNET_OMP_MAX_THREADS' not in os.environ:
        os.environ.setdefault('OMP_NUM_THREADS', str(physical_cores()))
    return os.environ.get('OMP_NUM_THREADS')


# Linux's arch_prctl (x86-64 syscall 158): a process must ask for the AMX
# tile registers before it may use them (Documentation/arch/x86/xstate.rst)
SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 158, 0x1023, 18
ISA_VAR, AMX_ISA = 'DNNL_MAX_CPU_ISA', 'AVX512_CORE_AMX'
log = logging.getLogger(__name__)


def request_amx_permission():
    """Ask Linux for the AMX tiles: True where granted; False off x86-64
    Linux, on kernels before 5.16 and on CPUs without AMX."""
    if sys.platform != 'linux' or platform.machine() != 'x86_64':
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM,
                            XFEATURE_XTILEDATA) == 0
    except (OSError, AttributeError):
        return False


def enable_amx(request=request_amx_permission):
    """Let MXNet's oneDNN (2.4) use AMX for bf16 and int8, which it does
    only when DNNL_MAX_CPU_ISA allows it; takes effect only before MXNet
    loads. oneDNN dies with SIGILL on AMX code the kernel has not allowed,
    so the ISA is raised only once `request` (the permission) succeeds;
    otherwise nothing changes but one debug line, and a cap of AMX that
    the process inherited is dropped. A user's other cap is kept. float32
    runs the same kernels either way. Returns the cap in force."""
    isa = os.environ.get(ISA_VAR)
    if isa not in (None, AMX_ISA):
        return isa
    if request():
        os.environ[ISA_VAR] = AMX_ISA
        return AMX_ISA
    log.debug('gluon-fcn: no AMX (the CPU or the kernel refused the tile '
              "permission): oneDNN keeps its own ISA")
    os.environ.pop(ISA_VAR, None)
    return None
