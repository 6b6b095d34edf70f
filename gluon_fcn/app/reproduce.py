"""`gluon-fcn reproduce --edition v1|d2l|pytorch`: the book's FCN run
through that edition's own code, with a plan first and a verdict last.

The plan says what will be downloaded (sizes, where to), what is already
there, and how long the run should take here, from a few timed steps on
random data of the recipe's shape. Then VOC2012 and the ImageNet
backbone are fetched from their sources in turn (`core.sources`), the
edition trains (`core.chapter`, `compare.chapter`), and
`reproduce.json`, `reproduce.md` and `curves.png` are written to --out
(`reproduce_report`), and one line begins `verdict:`.
"""
import os
import sys
import time

from ..core import book, numeric, sources
from ..core.files import check_readable
from ..errors import FCNError, WriteError
from .config import add_config_args, parse_crop
from .locks import folder_lock
from .reproduce_plan import has_torch, plan



def add_reproduce_args(p):
    p.add_argument('--edition', required=True, choices=tuple(book.EDITIONS),
                   help="the book's edition: 'v1' (d2lzh, nd), 'd2l' (2nd "
                   "edition, MXNet tab), 'pytorch' (2nd edition, PyTorch "
                   'tab, on the port; needs the compare extra)')
    add_config_args(p, names=('data_dir', 'model_root'))
    p.add_argument('--out', metavar='DIR', help='folder for reproduce.json, '
                   'reproduce.md and curves.png (default: '
                   'runs/reproduce-EDITION)')
    p.add_argument('--overwrite', action='store_true',
                   help="replace an earlier report in --out")
    p.add_argument('--dry-run', action='store_true', help='print the plan '
                   '(downloads, what is present, the time estimate) and '
                   'stop')
    for flag, what in (('--epochs', 'training epochs'),
                       ('--batch-size', 'examples a step')):
        p.add_argument(flag, type=int, metavar='N', help=f'{what} instead '
                       "of the book's (default: the book's; then no "
                       'verdict)')
    p.add_argument('--crop', metavar='H,W', help="random crop instead of "
                   "the book's 320,480 (default: the book's; then no "
                   'verdict)')
    p.add_argument('--voc-tar', metavar='FILE', help='a VOCtrainval tar '
                   'you have, used instead of downloading (default: none)')
    p.add_argument('--voc-url', metavar='URL', action='append',
                   help="a mirror of the VOC2012 tar; repeat it for more, "
                   "tried in order (default: d2l's mirror, then the "
                   'Pascal VOC host)')
    p.add_argument('--voc-sha1', metavar='SHA1', help='the sha1 the tar '
                   f'must have (default: VOC2012\'s, {sources.dl.VOC_SHA1})')
    p.add_argument('--backbone-params', metavar='FILE', help='ImageNet '
                   "weights of the backbone: a Gluon params file of "
                   "resnet18_v2 (or its features) for v1 and d2l, "
                   "torchvision's resnet18 .pth for pytorch (default: "
                   "Gluon's model store; the torch hub cache)")


def recipe_of(args):
    """(epochs, batch size, crop) of the run: the book's unless given."""
    e = book.EDITIONS[args.edition]
    epochs = e.epochs if args.epochs is None else \
        numeric.count('--epochs', args.epochs)
    batch_size = e.batch_size if args.batch_size is None else \
        numeric.count('--batch-size', args.batch_size)
    crop = e.crop if args.crop is None else parse_crop(args.crop)
    return epochs, batch_size, tuple(crop)


def check_args(args):
    """Every flag checked before anything is fetched or trained."""
    for flag in ('voc_tar', 'backbone_params'):
        path = getattr(args, flag)
        if path:
            name = '--' + flag.replace('_', '-')
            if not os.path.isfile(path):
                raise FCNError(f'{name} {path}: no such file')
            check_readable(path)
    if args.voc_sha1:
        try:
            args.voc_sha1 = sources.sha1_of(args.voc_sha1)
        except FCNError as e:
            raise FCNError(f'--voc-sha1 {e}') from e
    pth = bool(args.backbone_params) and \
        args.backbone_params.endswith(('.pth', '.pt'))
    if args.backbone_params and pth != (args.edition == 'pytorch'):
        want = ("torchvision's resnet18 .pth" if args.edition == 'pytorch'
                else "a Gluon params file of resnet18_v2")
        raise FCNError(f'--backbone-params {args.backbone_params}: '
                       f'--edition {args.edition} takes {want}')
    if args.voc_tar and args.voc_url:
        raise FCNError('--voc-tar: give it or --voc-url, not both')
    if args.model_root and args.edition == 'pytorch':
        raise FCNError('--model-root: goes with --edition v1 or d2l (the '
                       "PyTorch tab's weights are kept in the torch hub "
                       'cache, $TORCH_HOME/hub/checkpoints)')
    if args.edition == 'pytorch' and not args.dry_run and not has_torch():
        raise FCNError("--edition pytorch needs PyTorch: pip install "
                       "'gluon-fcn[compare]'")
    args.out = args.out or os.path.join('runs', f'reproduce-{args.edition}')
    report = os.path.join(args.out, 'reproduce.json')
    if os.path.exists(report) and not (args.overwrite or args.dry_run):
        raise FCNError(f'--out {args.out} already holds a report: pass '
                       '--overwrite to replace it')


def fetch_sources(args):
    """(VOC2012 folder, backbone file), each from its first source that
    works; a failed mirror is one note line on stderr."""
    note = lambda line: print(line, file=sys.stderr)  # noqa: E731
    try:
        voc_dir = sources.fetch_voc(
            args.data_dir, args.voc_url or sources.VOC_MIRRORS,
            args.voc_sha1 or sources.dl.VOC_SHA1, args.voc_tar, note)
    except WriteError as e:
        raise FCNError(f'--data-dir {args.data_dir}: {e}') from e
    except FCNError as e:
        raise FCNError(f'--voc-tar {e}' if args.voc_tar else
                       f'{e}, or give --voc-tar FILE') from e
    if args.backbone_params:
        return voc_dir, args.backbone_params
    from ..core.model import default_model_root
    try:
        if args.edition == 'pytorch':
            return voc_dir, sources.fetch_torch_backbone()
        return voc_dir, sources.fetch_gluon_backbone(
            args.model_root or default_model_root())
    except WriteError:
        raise
    except FCNError as e:
        raise FCNError(f'{e}, or give --backbone-params FILE') from e


def train(args, voc_dir, backbone, epochs, batch_size, crop):
    e = book.EDITIONS[args.edition]
    if args.edition == 'pytorch':
        from ..compare.chapter import run_pytorch as run
    else:
        from ..core import chapter
        run = chapter.run_v1 if args.edition == 'v1' else chapter.run_d2l
    try:
        return run(voc_dir, backbone, epochs, batch_size, crop, e.lr, e.wd)
    except FCNError as e:
        if backbone == args.backbone_params and str(e).startswith(backbone):
            raise FCNError(f'--backbone-params {e}') from e
        raise


def cmd_reproduce(args):
    epochs, batch_size, crop = recipe_of(args)
    check_args(args)
    changed = book.changes(args.edition, epochs, batch_size, crop)
    estimated, missing = plan(args, epochs, batch_size, crop, changed)
    if args.dry_run:
        print(f'dry run: nothing fetched or trained; {len(missing)} '
              'source(s) missing' if missing else
              'dry run: nothing fetched or trained; every source is '
              'at hand or answers')
        return 0
    from .reproduce_report import write_report
    with folder_lock(args.out):
        started = time.time()
        voc_dir, backbone = fetch_sources(args)
        result = train(args, voc_dir, backbone, epochs, batch_size, crop)
        final = result['epochs'][-1]
        verdict = book.verdict(args.edition, final['test_acc'], changed)
        write_report(args.out, args.edition, (epochs, batch_size, crop),
                     result, verdict, {
                         'voc_dir': voc_dir, 'backbone': backbone,
                         'voc_sha1': args.voc_sha1 or sources.dl.VOC_SHA1,
                         'estimated_seconds': estimated,
                         'seconds': time.time() - started})
    print(f'report written to {args.out}')
    print(verdict.line())
    return 0
