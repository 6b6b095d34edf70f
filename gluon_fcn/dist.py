"""Distributed training on MXNet's parameter server (kvstore dist_*).

Worker side: the kvstore, each worker's shard of the data, a Trainer whose
gradient scale makes N workers of batch B step as one process of batch
B * N, rank-prefixed output and a checksum of the trained parameters.

Launcher side: `launch` runs MXNet's own `tools/launch.py` (the dmlc
tracker: a scheduler, servers and workers, by `local` processes or `ssh`),
forwards the job's output and stops the whole job when any role fails.
"""
import hashlib
import os
import queue
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

import mxnet as mx
import numpy as onp
from mxnet import gluon

from .errors import FCNError

# the tracker's last words when a role fails; the launcher reads them
FAILED = 'gluon-fcn-launch: failed: '


def is_distributed(kvstore):
    """True for a dist_* kvstore, given by name or as a KVStore."""
    return 'dist' in getattr(kvstore, 'type', kvstore)


def create_kvstore(name):
    """`name` itself for 'device' and 'local' (Gluon makes those); for
    dist_* this process's KVStore, which joins the job (a worker started by
    `gluon-fcn launch`) and labels this process's output with its rank."""
    if not is_distributed(name):
        return name
    if not mx.runtime.Features().is_enabled('DIST_KVSTORE'):
        raise FCNError(f'--kvstore {name}: this MXNet build has no '
                       'distributed kvstore (DIST_KVSTORE is off)')
    if os.environ.get('DMLC_ROLE') != 'worker':
        raise FCNError(f'--kvstore {name}: start the job with gluon-fcn '
                       'launch (DMLC_ROLE is not worker)')
    label = prefix_output('[worker] ')
    kv = mx.kv.create(name)
    label.text = f'[worker {kv.rank}] '
    print(f'rank {kv.rank} of {kv.num_workers}: kvstore {name}, pid '
          f'{os.getpid()}', flush=True)
    return kv


def rank_of(kvstore):
    """(rank, number of workers): (0, 1) unless distributed."""
    if not is_distributed(kvstore):
        return 0, 1
    return kvstore.rank, kvstore.num_workers


class ShardSampler(gluon.data.Sampler):
    """Worker `rank`'s share of each global batch of `batch_size` *
    `num_workers` examples, drawn from one seeded shuffle of `length`.

    Every worker draws the same order from NumPy's generator (seeded per
    epoch by `train`); worker k takes the k-th `batch_size` slice of each
    global batch, so the workers' batches concatenated in rank order are
    the global batch. The remainder is dropped, so every worker steps
    equally often. Python's generator (the crops) is then reseeded per rank.
    """

    def __init__(self, length, batch_size, rank, num_workers):
        self._length, self._batch_size = length, batch_size
        self._rank, self._num_workers = rank, num_workers

    def __iter__(self):
        order = onp.random.permutation(self._length)
        random.seed(int(onp.random.randint(2 ** 31)) + self._rank)
        step = self._batch_size * self._num_workers
        for start in range(0, len(self) * self._num_workers, step):
            first = start + self._rank * self._batch_size
            yield from order[first:first + self._batch_size].tolist()

    def __len__(self):
        global_batches = self._length // (self._batch_size *
                                          self._num_workers)
        return global_batches * self._batch_size


def shard_sampler(length, batch_size, kvstore):
    """A `ShardSampler` for this worker, or None (shuffle all) if alone."""
    rank, num_workers = rank_of(kvstore)
    if num_workers == 1:
        return None
    return ShardSampler(length, batch_size, rank, num_workers)


class DistTrainer(gluon.Trainer):
    """A Trainer whose optimizer runs on the parameter servers.

    The servers sum the gradients the workers push, so the gradient scale
    is 1 / (batch per worker * workers): an update equals one process's on
    the global batch and the chapter's lr 0.1 keeps its meaning. Optimizer
    states stay on the servers: a checkpoint keeps the optimizer only,
    which is all there is for the chapter's SGD without momentum.
    """

    def __init__(self, params, lr, wd, kvstore):
        super().__init__(params, 'sgd', {
            'learning_rate': lr, 'wd': wd,
            'rescale_grad': 1.0 / kvstore.num_workers},
            kvstore=kvstore, update_on_kvstore=True)

    def save_states(self, fname):
        updater = mx.optimizer.get_updater(self._optimizer)
        with open(fname, 'wb') as f:
            f.write(updater.get_states(dump_optimizer=True))

    def load_states(self, fname):
        raise FCNError('--resume: not supported with a distributed kvstore')


def make_trainer(params, lr, wd, kvstore='device'):
    """The chapter's SGD, its updates made where `kvstore` says."""
    if is_distributed(kvstore):
        return DistTrainer(params, lr, wd, kvstore)
    return gluon.Trainer(params, 'sgd', {'learning_rate': lr, 'wd': wd},
                         kvstore=kvstore)


def params_sha1(net, ctx=None):
    """sha1 of the parameters the kvstore keeps in sync (those with a
    gradient; BatchNorm's running statistics are each worker's own), as
    bytes in sorted name order."""
    digest = hashlib.sha1()
    params = net._collect_params_with_prefix()
    for name in sorted(params):
        if params[name].grad_req != 'null':
            digest.update(name.encode())
            data = params[name].data(ctx or params[name].list_ctx()[0])
            digest.update(onp.ascontiguousarray(data.asnumpy()).tobytes())
    return digest.hexdigest()


def report_params(net, kvstore):
    """Print `rank K of N: final parameters sha1 <hex>`."""
    rank, num_workers = rank_of(kvstore)
    print(f'rank {rank} of {num_workers}: final parameters sha1 '
          f'{params_sha1(net)}', flush=True)


class Label:
    """The text that starts each line of a `PrefixedStream`; mutable."""

    def __init__(self, text):
        self.text = text


class PrefixedStream:
    """A text stream that starts every line with `label.text`, written
    when the line ends. A carriage return starts its line afresh, as on a
    terminal, so a progress bar shows once, as it ends, if it is left on
    screen."""

    def __init__(self, stream, label):
        self._stream, self._label, self._pending = stream, label, ''

    def write(self, text):
        lines = (self._pending + text).split('\n')
        self._pending = lines.pop().rsplit('\r', 1)[-1]
        for line in lines:
            shown = line.rsplit('\r', 1)[-1]
            if shown or not line:
                self._stream.write(self._label.text + shown + '\n')
        self._stream.flush()
        return len(text)

    def flush(self):  # a line goes out when it ends, never in pieces
        self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def prefix_output(text):
    """Start each line this process prints (stdout and stderr, from
    Python) with `text`; return the `Label` that relabels both."""
    label = Label(text)
    sys.stdout = PrefixedStream(sys.stdout, label)
    sys.stderr = PrefixedStream(sys.stderr, label)
    return label


# -- the launcher ----------------------------------------------------------

LOOPBACK = '127.0.0.1'
ROLE_LINE = re.compile(r'\[(worker|server|scheduler)\b')


def mxnet_launcher():
    """MXNet's own `tools/launch.py`, installed with MXNet."""
    path = os.path.join(os.path.dirname(mx.__file__), 'tools', 'launch.py')
    if not os.path.isfile(path):
        raise FCNError(f'launch: MXNet has no launcher at {path}')
    return path


def role_command(args, launcher='local'):
    """What every role runs, as shell words: this Python, the CLI, `args`.

    The ssh launcher wraps the command in single quotes, so there no word
    may need quoting.
    """
    words = [sys.executable, '-m', 'gluon_fcn.cli'] + list(args)
    for word in words:
        if launcher == 'ssh' and shlex.quote(word) != word:
            raise FCNError(f'launch --launcher ssh: {word!r} needs shell '
                           'quoting, which the ssh launcher cannot pass')
    return [shlex.quote(word) for word in words]


def launch_argv(num_workers, num_servers, args, hosts=None,
                launcher='local'):
    """The command line of the tracker: this module running launch.py."""
    argv = [sys.executable, '-m', 'gluon_fcn.dist', mxnet_launcher(),
            '-n', str(num_workers), '-s', str(num_servers),
            '--launcher', launcher]
    if hosts:
        argv += ['-H', hosts]
    return argv + role_command(args, launcher)


def launch(num_workers, num_servers, args, hosts=None, launcher='local'):
    """Run `gluon-fcn ARGS` as a job of a scheduler, `num_servers` servers
    and `num_workers` workers through MXNet's launcher; print its output,
    each line labelled with its role; stop the job if any role fails.

    Raises FCNError naming the role that failed, or the launcher's status.
    """
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    if launcher == 'local':  # every role on this machine, on loopback
        env.update(DMLC_NODE_HOST=LOOPBACK, DMLC_INTERFACE='lo')
    proc = subprocess.Popen(
        launch_argv(num_workers, num_servers, args, hosts, launcher),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env, start_new_session=True)
    lines = queue.Queue()
    threading.Thread(target=pump, args=(proc.stdout, lines),
                     daemon=True).start()
    try:
        failure = forward(proc, lines)
    finally:
        stop_group(proc)
    if failure:
        raise FCNError(f'{failure}; stopped the job')
    if proc.returncode:
        raise FCNError(f'launch: the MXNet launcher exited with status '
                       f'{proc.returncode}')


def pump(stream, lines):
    """Move `stream`'s lines into the queue `lines`; None at the end."""
    for line in stream:
        lines.put(line)
    lines.put(None)


def forward(proc, lines, grace=10.0):
    """Print the job's lines until it ends (or for `grace` seconds after
    the tracker has, if some process keeps the output open); return the
    tracker's message about a failed role, or None."""
    deadline = None
    while deadline is None or time.time() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if deadline is None and proc.poll() is not None:
                deadline = time.time() + grace
            continue
        if line is None:
            break
        if line.startswith(FAILED):
            return line[len(FAILED):].strip()
        if not ROLE_LINE.match(line):
            line = '[launch] ' + line
        print(line, end='', flush=True)
    return None


def stop_group(proc, grace=5.0):
    """End every process of the job: SIGTERM, then SIGKILL if need be."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.time() + grace
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        while group_alive(proc) and time.time() < deadline:
            time.sleep(0.1)
    proc.wait()


def group_alive(proc):
    proc.poll()
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return True


def free_port(host=LOOPBACK):
    """A TCP port nobody listens on now, chosen by the OS."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def fail(message):
    """Tell the launcher a role failed and end the tracker."""
    print(FAILED + message, flush=True)
    os._exit(1)


def role_failure(error):
    """'worker on HOST exited with status S' from a tracker thread's
    error (the scheduler's has no DMLC_ROLE in its command)."""
    cmd = str(getattr(error, 'cmd', ''))
    role = re.search(r'DMLC_ROLE=(\w+)', cmd)
    host = re.search(r'^ssh -o \S+ (\S+)', cmd)
    where = f' on {host.group(1)}' if host else ''
    status = getattr(error, 'returncode', error)
    return (f'{role.group(1) if role else "scheduler"}{where} exited with '
            f'status {status}')


def patch_tracker(local_roles):
    """Make MXNet 1.9's dmlc tracker run on Python 3.9+ and report a role
    that fails (its threads only print a traceback, and the rest of the
    job waits for the lost role forever); with `local_roles`, keep the
    job on loopback, from a port the OS says is free."""
    from dmlc_tracker import local, tracker
    if not hasattr(threading.Thread, 'isAlive'):  # gone in Python 3.9
        threading.Thread.isAlive = threading.Thread.is_alive
    threading.excepthook = lambda hook: fail(role_failure(hook.exc_value))
    run_role = local.exec_cmd

    def exec_cmd(cmd, num_attempt, role, taskid, pass_env):
        try:
            run_role(cmd, num_attempt, role, taskid, pass_env)
        except RuntimeError as e:
            status = re.search(r'code=(-?\d+)', str(e))
            fail(f'{role} (task {taskid}) exited with status '
                 f'{status.group(1) if status else "?"}')

    local.exec_cmd = exec_cmd
    if local_roles:
        tracker.get_host_ip = lambda host_ip=None: LOOPBACK
        port = free_port()
        tracker.PSTracker.__init__.__defaults__ = (port, port + 100, None)


def run_tracker(argv):
    """Run MXNet's launch.py (`argv[0]`) with its arguments in this process,
    then wait for the roles' last lines."""
    import runpy
    patch_tracker('local' in argv[argv.index('--launcher') + 1:][:1])
    sys.argv = list(argv)
    runpy.run_path(argv[0], run_name='__main__')
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join(60)


if __name__ == '__main__':
    run_tracker(sys.argv[1:])
