"""The one error type users see, turned by the CLI into one line and exit 2,
and the words for the operating system's I/O faults, shared by every layer
(the book's download as well as the package's own writes)."""
import errno


class FCNError(Exception):
    """A fault in what the user gave: a file, an image id or a flag.

    The message is one line and names the thing at fault.
    """


# what a student reads for the faults a disk, a mount or a quota gives;
# others keep the system's words (os.strerror), in lower case
CAUSES = {errno.ENOSPC: 'no space left on device',
          errno.EACCES: 'permission denied',
          errno.EPERM: 'permission denied',
          errno.EROFS: 'read-only file system',
          errno.EDQUOT: 'disk quota exceeded',
          errno.EIO: 'input/output error (a failing disk?)'}


def os_cause(error):
    """The cause of an `OSError` in a few words, e.g. 'no space left on
    device'."""
    if error.errno in CAUSES:
        return CAUSES[error.errno]
    words = error.strerror or str(error) or type(error).__name__
    return words[:1].lower() + words[1:]


class WriteError(FCNError):
    """A file or folder could not be written: `cause` while writing `path`
    (e.g. 'no space left on device while writing run/fcn.params')."""

    def __init__(self, path, cause, action='writing'):
        super().__init__(f'{cause} while {action} {path}')
        self.path, self.cause = path, cause


def read_error(path, error):
    """The `FCNError` for an `OSError` met reading `path`."""
    return FCNError(f'{os_cause(error)} while reading {path}')
