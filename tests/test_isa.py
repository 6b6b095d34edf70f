"""`make test` runs the numerical tests again with oneDNN held to a lower
instruction set (`DNNL_MAX_CPU_ISA`), so that one machine exercises the
kernels other CPUs take. This checks that the cap is in force: oneDNN
names the instruction set it dispatches to when DNNL_VERBOSE is on.
Each check sets its own cap in a child process, so it is not itself one
of the numerical tests run again.
"""
import os
import subprocess
import sys

import pytest

CONV = '''import mxnet as mx
x, w = mx.nd.ones((1, 3, 8, 8)), mx.nd.ones((4, 3, 3, 3))
mx.nd.Convolution(x, w, kernel=(3, 3), num_filter=4,
                  no_bias=True).wait_to_read()
'''
# what oneDNN 2.4's verbose line names above each cap (src/cpu/x64)
ABOVE = {'AVX2': ('AVX-512', 'AMX'),
         'AVX512_CORE': ('DL Boost', 'bfloat16', 'AMX')}


def onednn_isa(cap):
    """The instruction set oneDNN dispatches to under `cap`."""
    env = dict(os.environ, DNNL_VERBOSE='1')
    env['DNNL_MAX_CPU_ISA'] = cap
    out = subprocess.run([sys.executable, '-c', CONV], env=env,
                         capture_output=True, text=True, check=True).stdout
    return next(line.split('isa:', 1)[1] for line in out.splitlines()
                if 'isa:' in line)


@pytest.mark.parametrize('cap', sorted(ABOVE))
def test_onednn_keeps_under_the_cap(cap):
    isa = onednn_isa(cap)
    assert not any(word in isa for word in ABOVE[cap]), isa

