"""Downloading and extracting VOC2012 safely (d2l's download_extract).

Downloads go to a temporary name and are renamed only once their sha1
matches; extraction refuses members that would land outside the target
and goes to a temporary folder renamed into place when complete. A disk
fault (full, read-only, no permission) is a `WriteError` naming the file
and the cause. This layer imports nothing of the package's but its
errors, so it does here what `gluon_fcn.core.files.atomic_path` does for
the package's other writes.
"""
import hashlib
import os
import shutil
import tarfile
import tempfile

from tqdm import tqdm

from ..errors import FCNError, WriteError, os_cause

VOC_URL = ('http://d2l-data.s3-accelerate.amazonaws.com/'
           'VOCtrainval_11-May-2012.tar')
VOC_SHA1 = '4e443f8a2eca6b1dac8a6c57641b67dd40621a49'
VOC_SUBDIR = os.path.join('VOCdevkit', 'VOC2012')


def file_sha1(path, algorithm='sha1'):
    """The hex digest of a file's bytes (sha1, or another `hashlib`
    algorithm: torch hub's files are named by their sha256)."""
    digest = hashlib.new(algorithm)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def download(url, path, sha1=None):
    """Download `url` to `path` through a temporary file, checking its sha1.

    An existing file with the right sha1 is kept. A download that fails or
    does not match leaves nothing at `path`.
    """
    if os.path.exists(path) and (sha1 is None or file_sha1(path) == sha1):
        return path
    folder = os.path.dirname(os.path.abspath(path))
    writing(os.makedirs, folder, exist_ok=True, path=folder,
            action='creating')
    tmp = f'{path}.part'
    try:
        fetch(url, tmp, os.path.basename(path), final=path)
        if sha1 is not None and file_sha1(tmp) != sha1:
            raise FCNError(f'{url}: sha1 mismatch (expected {sha1}); '
                           'the download was removed')
        writing(os.replace, tmp, path, path=path)
    finally:
        _remove(tmp)
    return path


def writing(function, *args, path, action='writing', **kwargs):
    """`function(*args, **kwargs)`, an `OSError` turned into a
    `WriteError` naming `path`."""
    try:
        return function(*args, **kwargs)
    except OSError as e:
        raise WriteError(path, os_cause(e), action) from e


def fetch(url, path, desc=None, final=None):
    """Stream `url` into `path` and fsync it. A failed request or a
    response shorter than its Content-Length (a connection cut) raises
    `FCNError`; a disk fault, a `WriteError` naming `final` (the name the
    download is for; default `path`)."""
    import requests
    try:
        with requests.get(url, stream=True, timeout=60) as r:
            r.raise_for_status()
            total = int(r.headers.get('content-length', 0)) or None
            save_stream(r, path, total, desc, final or path)
            encoded = r.headers.get('content-encoding')
    except requests.RequestException as e:
        raise FCNError(f'cannot download {url}: {e}') from e
    size = os.path.getsize(path)
    if total and size != total and not encoded:
        raise FCNError(f'cannot download {url}: got {size} of {total} '
                       'bytes; the partial download was removed')


def save_stream(response, path, total, desc, final):
    """The chunks of a streamed `requests` response to `path`, fsynced;
    only the disk's faults are `WriteError`s (naming `final`)."""
    f = writing(open, path, 'wb', path=final)
    with f, tqdm(total=total, unit='B', unit_scale=True, desc=desc) as bar:
        for chunk in response.iter_content(1 << 20):
            writing(f.write, chunk, path=final)
            bar.update(len(chunk))
        writing(f.flush, path=final)
        writing(os.fsync, f.fileno(), path=final)


def _remove(path):
    if os.path.exists(path):
        os.remove(path)


def safe_extract(tar_path, dest):
    """Extract `tar_path` into `dest`, refusing members that land outside
    (absolute paths, `..`, links pointing out) or are not files, folders or
    links; where Python has them, tarfile's 'data' filter checks again as
    each member is written."""
    root = os.path.realpath(dest)
    try:
        with tarfile.open(tar_path) as tar:
            members = tar.getmembers()
            for m in members:
                check_member(tar_path, root, m)
            if hasattr(tarfile, 'data_filter'):
                tar.extractall(root, members,
                               filter=umask_filter(current_umask()))
            else:
                tar.extractall(root, members)
    except tarfile.TarError as e:  # the filter's name members
        raise FCNError(f'{tar_path}: cannot extract ({e})') from e
    except OSError as e:
        raise WriteError(tar_path, os_cause(e), 'extracting') from e


def current_umask():
    """The process's umask, read without changing it where Linux's /proc
    tells it."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def umask_filter(umask):
    """tarfile's 'data' filter, then the umask applied to each member's
    mode, as `open` applies it (tarfile sets the archive's modes)."""
    def keep(member, dest_path):
        member = tarfile.data_filter(member, dest_path)
        if member.mode is not None:
            member = member.replace(mode=member.mode & ~umask, deep=False)
        return member
    return keep


def check_member(tar_path, root, member):
    """Raise unless `member` lands inside `root`: its path, and the target
    of a link (a symlink's relative to its folder, a hard link's to root).
    """
    target = os.path.realpath(os.path.join(root, member.name))
    paths = [target]
    if member.issym():
        paths.append(os.path.realpath(os.path.join(
            os.path.dirname(target), member.linkname)))
    elif member.islnk():
        paths.append(os.path.realpath(os.path.join(root, member.linkname)))
    elif not (member.isfile() or member.isdir()):
        raise FCNError(f'{tar_path}: member {member.name!r} is not a file, '
                       'folder or link')
    if not all(p == root or p.startswith(root + os.sep) for p in paths):
        raise FCNError(f'{tar_path}: member {member.name!r} would be '
                       'extracted outside the target folder')


def download_voc(data_dir=os.path.join('..', 'data'), url=VOC_URL,
                 sha1=VOC_SHA1):
    """Download, verify and extract VOC2012; return the VOC2012 folder.

    The default `data_dir` is d2l's. Extraction goes to a temporary folder
    that is renamed into place only when complete.
    """
    voc_dir = os.path.join(data_dir, VOC_SUBDIR)
    if os.path.isfile(os.path.join(voc_dir, 'ImageSets', 'Segmentation',
                                   'train.txt')):
        return voc_dir
    tar_path = download(url, os.path.join(data_dir, url.split('/')[-1]),
                        sha1)
    return extract_voc(tar_path, data_dir)


def extract_voc(tar_path, data_dir):
    """Extract the VOC2012 folder of `tar_path` to
    `data_dir/VOCdevkit/VOC2012` through a temporary folder renamed into
    place when complete; return that folder."""
    voc_dir = os.path.join(data_dir, VOC_SUBDIR)
    tmp = writing(tempfile.mkdtemp, prefix='.extract-', dir=data_dir,
                  path=data_dir)
    try:
        safe_extract(tar_path, tmp)
        if not os.path.isdir(os.path.join(tmp, VOC_SUBDIR)):
            raise FCNError(f'{tar_path}: has no {VOC_SUBDIR} folder')
        writing(move_into_place, os.path.join(tmp, VOC_SUBDIR), voc_dir,
                path=voc_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return voc_dir


def move_into_place(folder, target):
    """Rename `folder` to `target`, replacing a partial one."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.exists(target):
        shutil.rmtree(target)
    os.replace(folder, target)
