"""Where the book's inputs come from, each source verified, with
fallbacks: VOC2012 (d2l's mirror, then the Pascal VOC host, or a tar at
hand) and the ImageNet backbones (Gluon's model store, torchvision's
file in the torch hub cache, or a file at hand).

A source that fails (refused, 404, a timeout, the wrong checksum) is
named in one line through `note`, and the next is tried; when none is
left, the `FCNError` says in one line what was tried and the exact file
and folder that would make it work offline.
"""
import contextlib
import io
import os

from mxnet.gluon.model_zoo import model_store

from ..d2l import download as dl
from ..errors import FCNError, WriteError
from ..v1 import data as v1_data
from .files import discard, make_folder

VOC_TAR = 'VOCtrainval_11-May-2012.tar'
# the tar's size, where a mirror does not say; about as much again
# extracted
VOC_BYTES = 1999639040
VOC_MIRRORS = (dl.VOC_URL, v1_data.VOC_URL)  # d2l's, then Pascal VOC's
GLUON_BACKBONE = 'resnet18_v2'
GLUON_BACKBONE_BYTES = 11695796 * 4  # its float32 arrays, about
TORCH_BACKBONE = 'resnet18-f37072fd.pth'
TORCH_BACKBONE_URL = f'https://download.pytorch.org/models/{TORCH_BACKBONE}'
TORCH_BACKBONE_BYTES = 11699112 * 4  # its float32 tensors, about
PROBE_SECONDS = 5


def voc_folder(data_dir):
    """`data_dir/VOCdevkit/VOC2012` where it is already extracted (its
    train split listed), else None."""
    voc_dir = os.path.join(data_dir, dl.VOC_SUBDIR)
    split = os.path.join(voc_dir, 'ImageSets', 'Segmentation', 'train.txt')
    return voc_dir if os.path.isfile(split) else None


def reason(error):
    """Why a download failed, in a few words: '404 Not Found', 'connection
    refused', 'timed out', 'sha1 mismatch', ..."""
    import requests
    cause = error.__cause__ or error
    if isinstance(cause, requests.HTTPError) and cause.response is not None:
        r = cause.response
        return f'{r.status_code} {r.reason}'.strip()
    if isinstance(cause, requests.Timeout):
        return 'timed out'
    text = str(cause)
    for words in ('sha1 mismatch', 'sha256 mismatch', 'Connection refused',
                  'Name or service not known', 'Temporary failure in name '
                  'resolution', 'Network is unreachable', 'got '):
        if words in text:
            if words == 'got ':  # a connection cut short
                return 'cut short ' + text[text.index(words):].split(';')[0]
            return words[:1].lower() + words[1:]
    return type(cause).__name__


def probe(url, timeout=PROBE_SECONDS):
    """(size in bytes or None, None) where `url` answers a HEAD request,
    else (None, the reason it does not)."""
    import requests
    try:
        r = requests.head(url, allow_redirects=True, timeout=timeout)
        r.raise_for_status()
    except requests.RequestException as e:
        wrapped = FCNError(str(e))
        wrapped.__cause__ = e
        return None, reason(wrapped)
    size = r.headers.get('content-length')
    return (int(size) if size and size.isdigit() else None), None


def fetch_voc(data_dir, urls=VOC_MIRRORS, sha1=dl.VOC_SHA1, tar=None,
              note=print):
    """The VOC2012 folder under `data_dir`, extracted once: from the tar
    `tar` (checked against `sha1`), else from `data_dir/VOC_TAR` where
    it is there and checks, else downloaded from each of `urls` in turn
    until one gives a file with that sha1."""
    present = voc_folder(data_dir)
    if present:
        return present
    make_folder(data_dir)
    if tar is not None:
        if not os.path.isfile(tar):
            raise FCNError(f'{tar}: no such file')
        found = dl.file_sha1(tar)
        if found != sha1:
            raise FCNError(f'{tar}: sha1 {found}, not {sha1}: not the '
                           'VOC2012 tar')
        return dl.extract_voc(tar, data_dir)
    path = os.path.join(data_dir, VOC_TAR)
    tried = []
    for url in urls:
        try:
            dl.download(url, path, sha1)
        except FCNError as e:
            if isinstance(e, WriteError):  # the disk, not the mirror
                raise
            tried.append(f'{url} ({reason(e)})')
            note(f'gluon-fcn: note: {url} failed ({reason(e)}); '
                 + ('trying the next mirror' if url != urls[-1] else
                    'no mirror left'))
            continue
        return dl.extract_voc(path, data_dir)
    raise FCNError(f'VOC2012: tried {", ".join(tried) or "no mirror"}; '
                   f'to work offline put {VOC_TAR} (sha1 {sha1}) in '
                   f'{os.path.abspath(data_dir)}')


def sha1_of(text):
    """`text` if it is a sha1 (40 hex digits), in lower case."""
    if len(text) != 40 or any(c not in '0123456789abcdefABCDEF'
                              for c in text):
        raise FCNError(f'{text}: not a sha1 (40 hex digits)')
    return text.lower()


def gluon_backbone_file(root):
    """(path, present): the model store's resnet18_v2 weights in `root`,
    and whether a file of that name is there."""
    name = (f'{GLUON_BACKBONE}-{model_store.short_hash(GLUON_BACKBONE)}'
            '.params')
    path = os.path.join(os.path.expanduser(root), name)
    return path, os.path.isfile(path)


def gluon_backbone_url():
    """Where Gluon's model store downloads resnet18_v2 from."""
    repo = os.environ.get('MXNET_GLUON_REPO', model_store.apache_repo_url)
    if not repo.endswith('/'):
        repo += '/'
    name = f'{GLUON_BACKBONE}-{model_store.short_hash(GLUON_BACKBONE)}'
    return f'{repo}gluon/models/{name}.zip'


def fetch_gluon_backbone(root):
    """The verified resnet18_v2 ImageNet weights in `root`, fetched
    through Gluon's model store where missing (its retries' lines kept
    quiet); one line naming the file and folder where that fails."""
    path, _ = gluon_backbone_file(root)
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet):
            return model_store.get_model_file(
                GLUON_BACKBONE, root=os.path.expanduser(root))
    except Exception as e:  # requests' errors, a bad sha1, a full disk
        cause = FCNError(str(e))
        cause.__cause__ = e
        raise FCNError(
            f'ImageNet weights of {GLUON_BACKBONE}: tried the Gluon model '
            f'store ({gluon_backbone_url()}: {reason(cause)}); to work '
            f'offline put {os.path.basename(path)} in '
            f'{os.path.dirname(os.path.abspath(path))}') from e


def torch_hub_checkpoints():
    """torch.hub's checkpoint folder, as torch.hub.get_dir() finds it
    ($TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub, else
    ~/.cache/torch/hub), without importing torch."""
    home = os.environ.get('TORCH_HOME') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or
        os.path.join(os.path.expanduser('~'), '.cache'), 'torch')
    return os.path.join(os.path.expanduser(home), 'hub', 'checkpoints')


def torch_backbone_file():
    """(path, present) of torchvision's resnet18 weights in the hub
    cache."""
    path = os.path.join(torch_hub_checkpoints(), TORCH_BACKBONE)
    return path, os.path.isfile(path)


def fetch_torch_backbone():
    """torchvision's resnet18 ImageNet weights in the torch hub cache,
    downloaded from download.pytorch.org where missing and checked
    against the sha256 prefix in their name, as torchvision does."""
    path, present = torch_backbone_file()
    if present and sha256_prefix(path) == TORCH_BACKBONE.split('-')[1][:8]:
        return path
    try:
        make_folder(os.path.dirname(path))
        dl.download(TORCH_BACKBONE_URL, path + '.download')
        if sha256_prefix(path + '.download') != \
                TORCH_BACKBONE.split('-')[1][:8]:
            raise FCNError('sha256 mismatch')
        os.replace(path + '.download', path)
    except FCNError as e:
        discard([path + '.download'])
        raise FCNError(
            f'ImageNet weights of torchvision resnet18: tried '
            f'{TORCH_BACKBONE_URL} ({reason(e)}); to work offline put '
            f'{TORCH_BACKBONE} in {os.path.dirname(path)}') from e
    return path


def sha256_prefix(path, n=8):
    return dl.file_sha1(path, 'sha256')[:n]
