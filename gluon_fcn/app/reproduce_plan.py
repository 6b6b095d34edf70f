"""The plan `gluon-fcn reproduce` prints before it fetches or trains:
each source present, to download (from where, how large, to where) or
missing, and the time the run should take on this machine, estimated
from a few timed steps on random data of the recipe's shape.
"""
import importlib
import os

from ..core import book, sources

TIMED_BATCH = 4  # timed steps take at most this batch: little memory
BOOK_IMAGES = (1114, 1078)  # VOC2012 images of at least 320x480 (book)
VOC_LISTED = (1464, 1449)   # VOC2012's segmentation train / val lists


def gb(size):
    """'2.0 GB', '47 MB', '3 kB'."""
    for unit, scale in (('GB', 1e9), ('MB', 1e6)):
        if size >= scale / 10:
            return f'{size / scale:.{1 if unit == "GB" else 0}f} {unit}'
    return f'{size / 1e3:.0f} kB'


def source_lines(args):
    """(plan lines, missing lines): VOC2012 and the backbone, each present,
    to download (from where, how large, to where) or missing."""
    lines, missing = [], []
    data_dir, sha1 = args.data_dir, args.voc_sha1 or sources.dl.VOC_SHA1
    tar = os.path.join(data_dir, sources.VOC_TAR)
    if sources.voc_folder(data_dir):
        lines.append(f'VOC2012: present in {sources.voc_folder(data_dir)}')
    elif args.voc_tar or os.path.isfile(tar):
        lines.append(f'VOC2012: the tar {args.voc_tar or tar} is present; '
                     f'checked against sha1 {sha1}, extracted to '
                     f'{os.path.join(data_dir, sources.dl.VOC_SUBDIR)}')
    else:
        urls = args.voc_url or sources.VOC_MIRRORS
        found = [(url,) + sources.probe(url) for url in urls]
        answers = [(url, size) for url, size, why in found if why is None]
        for url, _, why in found:
            if why:
                lines.append(f'VOC2012: mirror {url} does not answer ({why})')
        if answers:
            url, size = answers[0]
            size = gb(size or sources.VOC_BYTES)
            lines.append(f'VOC2012: will download {size} from {url} to '
                         f'{tar} (sha1 {sha1}), then extract it beside '
                         '(about as much again)')
        else:
            missing.append(
                f'missing: VOC2012: no {tar} and no mirror answers; put '
                f'{sources.VOC_TAR} (sha1 {sha1}) in '
                f'{os.path.abspath(data_dir)} or give --voc-tar FILE')
    lines_b, missing_b = backbone_lines(args)
    return lines + lines_b, missing + missing_b


def backbone_lines(args):
    if args.backbone_params:
        return [f'backbone: {args.backbone_params} (--backbone-params)'], []
    if args.edition == 'pytorch':
        (path, present), url = sources.torch_backbone_file(), \
            sources.TORCH_BACKBONE_URL
        size, name = sources.TORCH_BACKBONE_BYTES, 'torchvision resnet18'
    else:
        from ..core.model import default_model_root
        root = args.model_root or default_model_root()
        (path, present), url = sources.gluon_backbone_file(root), \
            sources.gluon_backbone_url()
        size, name = sources.GLUON_BACKBONE_BYTES, 'Gluon resnet18_v2'
    if present:
        return [f'backbone: {name} ImageNet weights present in {path}'], []
    got, why = sources.probe(url)
    if why:
        return [], [f'missing: backbone: no {path}, and {url} does not '
                    f'answer ({why}); put {os.path.basename(path)} in '
                    f'{os.path.dirname(os.path.abspath(path))} or give '
                    '--backbone-params FILE']
    return [f'backbone: will download {gb(got or size)} of {name} '
            f'ImageNet weights from {url} to {path}'], []


def image_counts(args, crop):
    """(train, val) images the run keeps: counted where VOC2012 is
    there (image sizes from their headers), else the book's at 320x480,
    else VOC2012's lists (an upper bound)."""
    voc_dir = sources.voc_folder(args.data_dir)
    if voc_dir:
        from PIL import Image
        from ..core.dataset import example_paths, read_split
        counts = []
        for split in ('train', 'val'):
            sizes = [Image.open(example_paths(voc_dir, name)[0]).size
                     for name in read_split(voc_dir, split)]
            counts.append(sum(w >= crop[1] and h >= crop[0]
                              for w, h in sizes))
        return tuple(counts), 'counted'
    if tuple(crop) == (320, 480):
        return BOOK_IMAGES, "the book's"
    return VOC_LISTED, "VOC2012's lists, an upper bound"


def estimate(args, epochs, batch_size, crop):
    """(seconds, the line that says how it was found)."""
    timed_batch = min(batch_size, TIMED_BATCH)
    if args.edition == 'pytorch':
        from ..compare.chapter import time_steps
    else:
        from ..core.chapter import time_steps
    train_s, test_s = time_steps(timed_batch, crop)
    (n_train, n_val), whence = image_counts(args, crop)
    steps = epochs * (n_train // batch_size * batch_size * train_s +
                      n_val // batch_size * batch_size * test_s)
    return steps, (f'an estimate from 3 timed steps of batch {timed_batch} '
                   f'at {crop[0]}x{crop[1]} on random data, per example, '
                   f'for {n_train} train and {n_val} val images '
                   f'({whence}), reading the images aside')


def duration(seconds):
    seconds = round(seconds)
    if seconds < 60:
        return f'{seconds} s'
    if seconds < 3600:
        return f'{seconds // 60} min {seconds % 60} s'
    return f'{seconds // 3600} h {seconds % 3600 // 60} min'


def has_torch():
    """Whether PyTorch imports here (the compare extra)."""
    try:
        importlib.import_module('torch')
    except ImportError:
        return False
    return True


def plan(args, epochs, batch_size, crop, changed):
    """Print the plan; return (estimated seconds, missing lines)."""
    from ..fast.native import cpu_model
    from ..threads import physical_cores
    e = book.EDITIONS[args.edition]
    print(f'reproduce: {e.title}, through {e.code}')
    print(f'recipe: {epochs} epochs, batch {batch_size}, crop '
          f'{crop[0]}x{crop[1]}, lr {e.lr:g}, wd {e.wd:g}, {e.backbone}'
          + (f" (not the book's recipe: {', '.join(changed)})"
             if changed else " (the book's)"))
    lines, missing = source_lines(args)
    for line in lines:
        print(f'plan: {line}')
    if args.edition == 'pytorch' and not has_torch():
        seconds = None
        missing.append("missing: PyTorch: pip install 'gluon-fcn[compare]' "
                       '(torch==2.13.0, CPU)')
        print('plan: time: not estimated, no PyTorch here')
    else:
        seconds, how = estimate(args, epochs, batch_size, crop)
        print(f'plan: time: about {duration(seconds)} of training and '
              f'testing on this machine ({cpu_model()}, '
              f'{physical_cores()} cores): {how}')
    if e.examples_per_sec:
        n_train = BOOK_IMAGES[0] // e.batch_size * e.batch_size
        book_s = e.epochs * n_train / e.examples_per_sec
        print(f"plan: the book's: {e.examples_per_sec} examples/sec on "
              f'{e.devices}, {duration(book_s)} of training steps')
    else:
        epoch_s = e.figures['seconds']
        print(f"plan: the book's: {epoch_s} sec an epoch of training and "
              f'testing on its GPUs, {duration(e.epochs * epoch_s)} in all')
    for line in missing:
        print(line)
    return seconds, missing
