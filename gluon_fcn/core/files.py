"""Atomic writes: a crash leaves the previous complete file, never half of one.
"""
import contextlib
import glob
import json
import os
import tempfile

from ..errors import FCNError


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success, fsync and rename it.

    On error the temporary file is removed and `path` is left untouched.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f'.{stem}.', suffix=f'.tmp{ext}',
                               dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def remove_temporaries(folder):
    """Delete what `atomic_path` left in `folder` when a process was killed
    inside it (never a complete file: those were renamed)."""
    for path in glob.glob(os.path.join(glob.escape(folder), '.*.tmp*')):
        os.remove(path)


def save_json(obj, path):
    """Write `obj` as indented JSON to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(obj, f, indent=2)
            f.write('\n')


def load_json(path):
    """The object in a JSON file; a missing or damaged one is an FCNError.
    """
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise FCNError(f'{path}: cannot read it as JSON ({e})') from e
