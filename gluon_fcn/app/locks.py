"""One writer a run folder: an advisory lock (`fcntl.flock`) on
`FOLDER/.lock` (for `train` and `predict`), or on `.NAME.lock` beside an
output file (`evaluate --json`), held for the life of the command.

The lock file holds the holder's process id, for the message that refuses
a second writer. The kernel releases the lock of a process that dies, even
by kill -9; the id it leaves in the file names the process that left the
folder, in a note, when the next command takes the folder over.
"""
import contextlib
import errno
import fcntl
import os
import sys

from ..core.files import check_readable, discard, make_folder
from ..errors import FCNError, WriteError, os_cause

LOCK_NAME = '.lock'


def entries(folder):
    """The names in `folder` besides its lock file."""
    return [name for name in os.listdir(folder) if name != LOCK_NAME]


def holder(path):
    """The process id written in the lock file `path`, or None."""
    try:
        with open(path, encoding='ascii') as f:
            text = f.read().strip()
    except (OSError, ValueError):
        return None
    return int(text) if text.isdigit() else None


def alive(pid):
    """Whether process `pid` exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def take(path, named, kind):
    """Open and lock `path`; its descriptor. Refused in one line naming
    `named` ('--out RUN') and the holder while another process has it.
    """
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise WriteError(path, os_cause(e), 'locking') from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise WriteError(path, os_cause(e), 'locking') from e
            pid = holder(path)
            who = f'process {pid}' if pid else 'another process'
            raise FCNError(f'{named}: in use by {who}, which holds '
                           f'{path}; wait for it to finish or stop it, or '
                           f'give another {kind}') from e
        try:  # the file we locked is still the one at `path` (a holder
            # that finished may have removed it between open and flock)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def locked(folder, name, named, kind):
    """Hold the lock file `folder/name` for the block, making `folder`; a
    lock left by a process that is gone is taken over with a note on
    stderr. The lock file goes at the end, and the folder too if the
    block left it empty and it was made here."""
    made = not os.path.isdir(folder)
    make_folder(folder)
    path = os.path.join(folder, name)
    fd = take(path, named, kind)
    try:
        left = holder(path)
        if left and left != os.getpid() and not alive(left):
            print(f'gluon-fcn: note: {named} was left locked by process '
                  f'{left}, which is gone; taking it over', file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode('ascii'), 0)
        yield
    finally:
        discard([path])  # a lock left behind is taken over next time
        os.close(fd)
        if made:
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only if empty


def folder_lock(folder, flag='--out'):
    """`locked` on `folder/.lock`: one writer the folder."""
    if os.path.lexists(folder):
        check_readable(folder, 'folder')
    return locked(folder, LOCK_NAME, f'{flag} {folder}', 'folder')


def file_lock(path, flag):
    """`locked` on `.NAME.lock` beside the output file `path`: one writer
    it (and the files written beside it). Where that folder cannot be
    written, no lock: the write itself will say why."""
    folder = os.path.dirname(path) or '.'
    if os.path.isdir(folder) and not os.access(folder, os.W_OK):
        return contextlib.nullcontext()
    return locked(folder, f'.{os.path.basename(path)}.lock',
                  f'{flag} {path}', 'file')
