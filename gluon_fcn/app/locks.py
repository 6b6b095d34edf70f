"""One writer a run folder: an advisory lock (`fcntl.flock`) on
`FOLDER/.lock`, held for the life of the command that writes there.

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

from ..core.files import check_readable, make_folder
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


def take(path, flag, folder):
    """Open and lock `path`; its descriptor. Refused in one line naming
    the folder and the holder while another process has it."""
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
            raise FCNError(f'{flag} {folder}: in use by {who}, which holds '
                           f'{path}; wait for it to finish or stop it, or '
                           'give another folder') from e
        try:  # the file we locked is still the one at `path` (a holder
            # that finished may have removed it between open and flock)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder, flag='--out'):
    """Hold `folder`'s lock for the block (making the folder); a lock
    left by a process that is gone is taken over with a note on stderr.
    The lock file goes at the end, and the folder too if the block left
    it empty and it was made here."""
    if os.path.lexists(folder):
        check_readable(folder, 'folder')
    made = not os.path.isdir(folder)
    make_folder(folder)
    path = os.path.join(folder, LOCK_NAME)
    fd = take(path, flag, folder)
    try:
        left = holder(path)
        if left and left != os.getpid() and not alive(left):
            print(f'gluon-fcn: note: {flag} {folder} was left locked by '
                  f'process {left}, which is gone; taking it over',
                  file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode('ascii'), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
        os.close(fd)
        if made:
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only if empty
