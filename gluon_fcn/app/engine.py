"""A command again on MXNet's synchronous engine, which MXNet chooses
once, when it loads (`MXNET_ENGINE_TYPE`): `compare --dtype float64`
runs so.

Why: MXNet's threaded engine runs independent operators at once and its
queued work can overlap PyTorch's (two OpenMP teams, in float64 through
MXNet's bundled OpenBLAS), which once corrupted a float64 result (README,
results log, "Measured while writing the code"); the naive engine runs
one operator at a time.
"""
import os
import subprocess
import sys

SYNCHRONOUS = 'NaiveEngine'


def rerun_synchronously(argv):
    """This command again in a process with MXNet's naive engine; its exit
    status."""
    env = dict(os.environ, MXNET_ENGINE_TYPE=SYNCHRONOUS)
    return subprocess.run([sys.executable, '-m', 'gluon_fcn.app.cli'] +
                          argv, env=env).returncode
