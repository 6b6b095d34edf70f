"""Every file the package writes goes through `atomic_path`, and every
file it removes through `remove_file` (`remove_entry` for a folder,
`discard` for what a failed write leaves). The book's layer
(`gluon_fcn.d2l.download`) does the same with a helper of its own: it
imports nothing of the package's.

A write is made to a temporary file beside the target, which is created
with the mode the umask allows (0644 under umask 022, as `open` would
give; not `mkstemp`'s 0600), fsynced, and renamed over the target, so a
crash, a signal or a full disk leaves the previous complete file and no
temporary. A fault becomes a `WriteError`, one line naming the file and
the cause: 'no space left on device while writing run/fcn.params'.
Reading checks (`check_readable`) and removals name the file and the
cause the same way; a file already gone is no fault.
"""
import contextlib
import errno
import glob
import json
import os
import shutil

from mxnet.base import MXNetError

from ..errors import FCNError, WriteError, os_cause, read_error

PROBE_BYTES = 1 << 16


class IncompleteWrite(Exception):
    """A library wrote less than it should have and said nothing: raised
    inside `atomic_path`, which finds the cause (MXNet's `mx.nd.save`
    ignores the failure of its last flush on a full disk)."""


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path` for a writer to fill; on
    success, fsync it and rename it to `path`.

    The temporary file exists, empty, with the mode the umask gives.
    Whatever happens, no temporary is left and `path` is either the
    previous file or the complete new one. `OSError`s and MXNet's file
    errors become a `WriteError` naming `path` and the cause.
    """
    folder = os.path.dirname(path)
    make_folder(folder or '.')
    tmp = None
    try:
        tmp = create_temporary(path)
        yield tmp
        fsync(tmp)
        os.replace(tmp, path)
        fsync(folder or '.', directory=True)  # the rename itself
    except OSError as e:
        raise WriteError(path, os_cause(e)) from e
    except (MXNetError, IncompleteWrite) as e:
        if isinstance(e, MXNetError) and not mxnet_file_error(e):
            raise
        raise WriteError(path, library_write_cause(tmp, e)) from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.remove(tmp)  # gone when renamed


def create_temporary(path):
    """Create an empty `.STEM.RANDOM.tmpEXT` beside `path`, mode 0666
    less the umask (the kernel applies it), and return its path."""
    folder = os.path.dirname(path)
    stem, ext = os.path.splitext(os.path.basename(path))
    while True:
        tmp = os.path.join(folder, f'.{stem}.{os.urandom(4).hex()}.tmp{ext}')
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                         os.O_CLOEXEC, 0o666)
        except FileExistsError:  # another writer drew the same name
            continue
        os.close(fd)
        return tmp


def fsync(path, directory=False):
    """Flush `path` (a file, or a folder's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems cannot sync a folder
        if not directory or e.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


def mxnet_file_error(error):
    """Whether an MXNetError comes from dmlc's file streams (a write that
    fell short or a file it could not open), not from a computation."""
    return any(word in str(error) for word in
               ('FileStream', 'LocalFileSystem', 'local_filesys'))


def library_write_cause(tmp, error):
    """Why a library's write to `tmp` failed, where it gives no errno: the
    `OSError` a further write to the same file meets (a full disk, a
    quota), else the library's own words."""
    try:
        with open(tmp, 'ab') as f:
            f.write(bytes(PROBE_BYTES))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        return os_cause(e)
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f'the write fell short ({lines[-1] if lines else error})'


def make_folder(folder):
    """`os.makedirs(folder, exist_ok=True)`; a fault is a `WriteError`."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise WriteError(folder, os_cause(e), 'creating') from e


def remove_temporaries(folder):
    """Delete what `atomic_path` left in `folder` when a process was killed
    inside it (never a complete file: those were renamed)."""
    for path in glob.glob(os.path.join(glob.escape(folder), '.*.tmp*')):
        remove_file(path)


def remove_file(path):
    """Delete `path` where it is; a fault is a `WriteError`."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise WriteError(path, os_cause(e), 'removing') from e


def remove_entry(path):
    """Delete the file, link or folder (with all it holds) `path` where it
    is; a fault is a `WriteError` naming the file at fault."""
    if not (os.path.isdir(path) and not os.path.islink(path)):
        return remove_file(path)
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise WriteError(e.filename or path, os_cause(e), 'removing') from e


def discard(paths):
    """Remove `paths` where they are after a failure, passing over a fault
    in removing one: the failure being raised is the one to report."""
    for path in paths:
        with contextlib.suppress(WriteError):
            remove_file(path)


def link_or_copy(source, path):
    """Make `path` hold the complete file `source`, atomically: a hard
    link where the file system has them (no second copy on the disk),
    else a copy."""
    with atomic_path(path) as tmp:
        os.remove(tmp)  # os.link makes its own
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def write_text(text, path):
    """Write `text` to `path` (UTF-8) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)


def save_json(obj, path):
    """Write `obj` as indented JSON to `path` atomically."""
    write_text(json.dumps(obj, indent=2) + '\n', path)


def check_readable(path, what='file'):
    """Raise an `FCNError` naming `path` unless it can be opened for
    reading ('permission denied while reading PATH'; `what` names a
    missing one: 'PATH: no such image file'); a folder must also be
    searchable. Opening is the test: as root, mode 000 still reads."""
    directory = os.path.isdir(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as e:
        raise FCNError(f'{path}: no such {what}') from e
    except OSError as e:
        raise read_error(path, e) from e
    os.close(fd)
    if directory and not os.access(path, os.X_OK):
        raise FCNError(f'permission denied while reading {path}')


def load_json(path):
    """The object in a JSON file; a missing, unreadable or damaged one is
    an FCNError."""
    check_readable(path, 'file')
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except OSError as e:
        raise read_error(path, e) from e
    except ValueError as e:
        raise FCNError(f'{path}: cannot read it as JSON ({e})') from e
