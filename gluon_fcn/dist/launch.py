"""`gluon-fcn launch`: a distributed job through MXNet's own launcher.

MXNet's `tools/launch.py` (the dmlc tracker) starts a scheduler, servers
and workers, as `local` processes or over `ssh`; every role runs the same
`gluon-fcn train --kvstore dist_*` command (servers and the scheduler
serve inside `import mxnet`). `launch` forwards the job's output, labelled
by role, and stops the whole job when any role fails, where the tracker
alone would wait for the lost role forever.
"""
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

import mxnet as mx

from ..errors import FCNError

# the tracker's last words when a role fails; the launcher reads them
FAILED = 'gluon-fcn-launch: failed: '
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

    The ssh launcher wraps the command in single quotes, so with it no
    word may need quoting.
    """
    words = [sys.executable, '-m', 'gluon_fcn.app.cli'] + list(args)
    for word in words:
        if launcher == 'ssh' and shlex.quote(word) != word:
            raise FCNError(f'launch --launcher ssh: {word!r} needs shell '
                           'quoting, which the ssh launcher cannot pass')
    return [shlex.quote(word) for word in words]


def launch_argv(num_workers, num_servers, args, hosts=None,
                launcher='local'):
    """The command line of the tracker: this module running launch.py."""
    argv = [sys.executable, '-m', 'gluon_fcn.dist.launch', mxnet_launcher(),
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
    patch_tracker(argv[argv.index('--launcher') + 1] == 'local')
    sys.argv = list(argv)
    runpy.run_path(argv[0], run_name='__main__')
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join(60)


if __name__ == '__main__':
    run_tracker(sys.argv[1:])
