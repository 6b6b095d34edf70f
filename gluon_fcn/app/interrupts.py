"""Stopping a command cleanly: SIGINT (Ctrl-C) and SIGTERM end it with one
line saying what was kept and the exact command that continues, and an
exit status of 128 + the signal's number (130, 143), as a shell reports a
process the signal ended.

A run stopped while its data is made or checked has no folder yet; one
stopped after that, before its first checkpoint, keeps its folder
(config.json and an empty checkpoints/). Either way the same command
starts it again (`run_folder.unstarted_run`), as it does after a SIGKILL.
"""
import contextlib
import os
import shlex
import signal
import threading

from ..errors import FCNError, WriteError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A signal stopped the command; `note` says what was kept."""

    def __init__(self, signum=signal.SIGINT, note=''):
        super().__init__(signum, note)
        self.signum, self.note = signum, note


@contextlib.contextmanager
def signals_interrupt():
    """Within: SIGINT and SIGTERM raise `Interrupted` in the main thread,
    so `finally` clauses and `atomic_path` clean up (SIGTERM's default
    would end the process on the spot, mid-write). The previous handlers
    are restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def exit_status(error):
    """128 + the number of the signal behind a KeyboardInterrupt."""
    return 128 + getattr(error, 'signum', signal.SIGINT)


def describe(error):
    """'interrupted by SIGTERM; ...what was kept...'."""
    name = signal.Signals(getattr(error, 'signum', signal.SIGINT)).name
    note = getattr(error, 'note', '')
    return f'interrupted by {name}' + (f'; {note}' if note else '')


def command_line(argv):
    """The `gluon-fcn` command of `argv`, quoted for a shell."""
    return shlex.join(['gluon-fcn'] + list(argv))


def what_was_kept(config, argv, when=''):
    """What a train stopped now leaves in `config.out` and the command
    that continues it, after `when` (e.g. 'once that is fixed, '); ''
    where the folder cannot tell."""
    from .run_folder import last_checkpoint
    try:
        epoch = last_checkpoint(config.out) \
            if os.path.isdir(config.out) else None
    except FCNError:
        return ''
    if epoch is None:
        return ('no checkpoint yet, nothing to keep; '
                f'{when}the same command starts the run again: '
                f'{command_line(argv)}')
    kept = (f'{config.out} is kept as of epoch {epoch} of {config.epochs} '
            f'(checkpoints/epoch-{epoch:04d}.*)')
    if 'dist' in config.kvstore:
        return f'{kept}; a distributed run cannot be resumed'
    return (f'{kept}; {when}continue with: '
            f"{command_line(['train', '--out', config.out, '--resume'])}")


@contextlib.contextmanager
def explained_stops(config, argv):
    """Within a train: an interrupt or a write fault says what was kept
    of the run and how to continue it."""
    try:
        yield
    except KeyboardInterrupt as e:
        signum = getattr(e, 'signum', signal.SIGINT)
        raise Interrupted(signum, what_was_kept(config, argv)) from None
    except WriteError as e:
        if not os.path.isdir(config.out):  # nothing was written to it
            raise
        kept = what_was_kept(config, argv, 'once that is fixed, ')
        raise FCNError(f'{e}; {kept}' if kept else str(e)) from e
