"""How many OpenMP threads MXNet should use, decided before it loads.

MXNet 1.9.1 (src/engine/openmp.cc) takes half the logical CPUs on x86,
assuming two hyper-threads a core; on machines without hyper-threading
(most cloud VMs, this project's 2-core CI) that leaves half the cores
idle: the chapter's model trained at 2.7 img/s on 1 thread and 4.7 on 2
(`benchmarks/`). MXNet reads OMP_NUM_THREADS once, when it loads, and
sets the OpenMP runtime it shares with oneDNN (and with torch, when both
are in one process) to that count.
"""
import os


def physical_cores(cpuinfo='/proc/cpuinfo'):
    """Physical cores this process may run on: distinct (physical id, core
    id) pairs of the CPUs in its affinity mask; os.cpu_count() where
    /proc/cpuinfo cannot tell."""
    allowed = os.sched_getaffinity(0) if hasattr(os, 'sched_getaffinity') \
        else set(range(os.cpu_count() or 1))
    cores, cpu, package = set(), None, '0'
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = (part.strip() for part in line.partition(':'))
                if key == 'processor':
                    cpu = int(value)
                elif key == 'physical id':
                    package = value
                elif key == 'core id' and cpu in allowed:
                    cores.add((package, value))
    except (OSError, ValueError):
        pass
    return len(cores) or len(allowed) or 1


def default_omp_threads():
    """Set OMP_NUM_THREADS to the physical cores unless the user has set
    it (or MXNET_OMP_MAX_THREADS); takes effect only before MXNet loads.
    Returns the value in force."""
    if 'MXNET_OMP_MAX_THREADS' not in os.environ:
        os.environ.setdefault('OMP_NUM_THREADS', str(physical_cores()))
    return os.environ.get('OMP_NUM_THREADS')
