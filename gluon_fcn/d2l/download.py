"""Downloading and extracting VOC2012 safely (d2l's download_extract).

Downloads go to a temporary name and are renamed only once their sha1
matches; extraction refuses members that would land outside the target
and goes to a temporary folder renamed into place when complete.
"""
import hashlib
import os
import shutil
import tarfile
import tempfile

from tqdm import tqdm

from ..errors import FCNError

VOC_URL = ('http://d2l-data.s3-accelerate.amazonaws.com/'
           'VOCtrainval_11-May-2012.tar')
VOC_SHA1 = '4e443f8a2eca6b1dac8a6c57641b67dd40621a49'
VOC_SUBDIR = os.path.join('VOCdevkit', 'VOC2012')


def file_sha1(path):
    sha1 = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            sha1.update(chunk)
    return sha1.hexdigest()


def download(url, path, sha1=None):
    """Download `url` to `path` through a temporary file, checking its sha1.

    An existing file with the right sha1 is kept. A download that fails or
    does not match leaves nothing at `path`.
    """
    if os.path.exists(path) and (sha1 is None or file_sha1(path) == sha1):
        return path
    import requests
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f'{path}.part'
    try:
        fetch(url, tmp, os.path.basename(path))
    except (requests.RequestException, OSError, FCNError) as e:
        _remove(tmp)
        raise FCNError(f'cannot download {url}: {e}') from e
    if sha1 is not None and file_sha1(tmp) != sha1:
        _remove(tmp)
        raise FCNError(f'{url}: sha1 mismatch (expected {sha1}); '
                       'the download was removed')
    os.replace(tmp, path)
    return path


def fetch(url, path, desc=None):
    """Stream `url` into `path` and fsync it; a response shorter than its
    Content-Length (a connection cut) raises `FCNError`."""
    import requests
    with requests.get(url, stream=True, timeout=60) as r:
        r.raise_for_status()
        total = int(r.headers.get('content-length', 0)) or None
        with open(path, 'wb') as f, tqdm(total=total, unit='B',
                                         unit_scale=True, desc=desc) as bar:
            for chunk in r.iter_content(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
        size = os.path.getsize(path)
        if total and size != total and not r.headers.get('content-encoding'):
            raise FCNError(f'got {size} of {total} bytes; the partial '
                           'download was removed')


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
                tar.extractall(root, members, filter='data')
            else:
                tar.extractall(root, members)
    except (tarfile.TarError, OSError) as e:  # the filter's name members
        raise FCNError(f'{tar_path}: cannot extract ({e})') from e


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
    tmp = tempfile.mkdtemp(prefix='.extract-', dir=data_dir)
    try:
        safe_extract(tar_path, tmp)
        if not os.path.isdir(os.path.join(tmp, VOC_SUBDIR)):
            raise FCNError(f'{tar_path}: has no {VOC_SUBDIR} folder')
        os.makedirs(os.path.dirname(voc_dir), exist_ok=True)
        if os.path.exists(voc_dir):
            shutil.rmtree(voc_dir)
        os.replace(os.path.join(tmp, VOC_SUBDIR), voc_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return voc_dir
