"""`gluon-fcn`: argparse -> a config -> calls into the package.

Users' mistakes end in one line, `gluon-fcn: error: ...`, and exit 2.
"""
import argparse
import os
import sys

from .errors import FCNError

# what `train --kvstore` takes; dist_* need a job made by `launch`
KVSTORES = ('device', 'local', 'dist_sync', 'dist_device_sync',
            'dist_async')


def parse_pair(text, flag):
    """'320,480' -> (320, 480), both positive."""
    try:
        h, w = (int(v) for v in text.split(','))
    except ValueError:
        raise FCNError(f'{flag} {text}: write HEIGHT,WIDTH, e.g. 320,480')
    if h <= 0 or w <= 0:
        raise FCNError(f'{flag} {text}: both sides must be positive')
    return h, w


def parse_crop(text, flag='--crop'):
    """'320,480' -> (320, 480); both sides multiples of 32."""
    h, w = parse_pair(text, flag)
    if h % 32 or w % 32:
        raise FCNError(f'{flag} {text}: both sides must be positive '
                       'multiples of 32, since the FCN downsamples by 32 '
                       'and upsamples by 32')
    return h, w


def parse_windows(args):
    """--window (multiples of 32) and --stride, each None when not given.
    """
    window = args.window and parse_crop(args.window, '--window')
    stride = args.stride and parse_pair(args.stride, '--stride')
    return window, stride


def parse_classes(text):
    """'background,object' -> ('background', 'object'), or None."""
    if text is None:
        return None
    classes = tuple(c.strip() for c in text.split(','))
    if len(classes) < 2 or not all(classes):
        raise FCNError(f'--classes {text}: give at least two names, '
                       'comma-separated, background first')
    return classes


def parse_scale(text):
    """'0.5,2.0' -> (0.5, 2.0), or None."""
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(','))
    except ValueError:
        raise FCNError(f'--scale {text}: write LOW,HIGH, e.g. 0.5,2.0')
    if not 0 < low <= high:
        raise FCNError(f'--scale {text}: need 0 < LOW <= HIGH')
    return low, high


def positive(flag, value, low=0):
    """`value` must exceed `low` (be positive by default)."""
    if value is not None and value <= low:
        word = 'positive' if low == 0 else f'greater than {low}'
        raise FCNError(f'{flag} must be {word}, not {value}')
    return value


def add_train_args(p):
    p.add_argument('--data', default='synthetic',
                   help="'synthetic' (default), 'voc2012' or a VOC folder")
    p.add_argument('--out', default=os.path.join('runs', 'fcn'),
                   help='run folder (default runs/fcn)')
    p.add_argument('--epochs', type=int, help='default 5')
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--crop', default='320,480', help='HEIGHT,WIDTH')
    p.add_argument('--lr', type=float, default=0.1)
    p.add_argument('--wd', type=float, default=1e-3)
    p.add_argument('--devices', default='auto',
                   help="'auto' (every GPU, else the CPU), cpu:0,cpu:1, "
                        'gpu:0,gpu:1')
    p.add_argument('--backbone', default='resnet18_v2',
                   help='resnet18_v2 (the chapter), resnet18_v1, '
                        'resnet34_v1/v2, resnet50_v1/v2, vgg16')
    p.add_argument('--head', default='32s', choices=('32s', '16s', '8s'),
                   help="'32s' (the chapter) or the paper's skip nets")
    p.add_argument('--pretrained', action='store_true',
                   help='ImageNet weights for the backbone')
    p.add_argument('--model-root', help='local Gluon model store folder')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--classes', help='class names, comma-separated, index '
                   "order (default: the data's classes.txt, else VOC's 21)")
    p.add_argument('--labels', choices=('d2l', 'voc'), default='d2l',
                   help="'d2l': the VOC border counts as background (the "
                        "textbook); 'voc': it is ignored by loss and metrics")
    p.add_argument('--flip', action='store_true',
                   help='augment: random horizontal flips (off: d2l)')
    p.add_argument('--scale', help='augment: LOW,HIGH random rescaling '
                   'before the crop, e.g. 0.5,2.0 (off: d2l)')
    p.add_argument('--workers', type=int, default=0,
                   help='data loader processes (default 0)')
    p.add_argument('--no-hybridize', action='store_true')
    p.add_argument('--chapter-layers', action='store_true',
                   help="the chapter's Conv2DTranspose upsampler instead "
                        'of the quadrant split (same values, slower)')
    p.add_argument('--data-dir', default='data',
                   help="where 'synthetic' and 'voc2012' are kept")
    p.add_argument('--synth-train', type=int, default=200)
    p.add_argument('--synth-val', type=int, default=50)
    p.add_argument('--synth-scale', type=float, default=1.0,
                   help='scale of the synthetic image sizes (demo: 0.5)')
    p.add_argument('--resume', action='store_true',
                   help='continue the run in --out from its last epoch')
    p.add_argument('--overwrite', action='store_true',
                   help='replace the run in --out')
    p.add_argument('--kvstore', default='device', choices=KVSTORES,
                   help="where gradients meet: 'device' (default), "
                        "'local', or MXNet's parameter server (dist_*, "
                        'in a job started by gluon-fcn launch)')


def add_launch_args(p):
    p.add_argument('--workers', type=int, required=True)
    p.add_argument('--servers', type=int, default=1)
    p.add_argument('--hosts', help='hosts file, one host a line (ssh)')
    p.add_argument('--launcher', choices=('local', 'ssh'), default='local',
                   help="'local': every role on this machine (default)")
    p.add_argument('job', nargs=argparse.REMAINDER,
                   help='-- train ... --kvstore dist_sync')


def build_parser():
    parser = argparse.ArgumentParser(
        prog='gluon-fcn', description='Fully Convolutional Networks '
        '(d2l) in MXNet Gluon.')
    parser.add_argument('--debug', action='store_true',
                        help='show tracebacks')
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('synth', help='write the synthetic VOC dataset')
    p.add_argument('--out', default=os.path.join('data', 'synthetic'))
    p.add_argument('--train', type=int, default=200)
    p.add_argument('--val', type=int, default=50)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--binary', action='store_true',
                   help='label every object 1: object / background')
    add_train_args(sub.add_parser('train', help='train an FCN'))
    add_launch_args(sub.add_parser(
        'launch', help="run a distributed train on MXNet's parameter "
        'server: a scheduler, servers and workers'))
    p = sub.add_parser('predict', help='segment images with a trained run')
    p.add_argument('--run', required=True)
    p.add_argument('--out', required=True, help='folder for the masks')
    p.add_argument('--device', default='cpu:0')
    p.add_argument('--window', help="sliding window HEIGHT,WIDTH "
                   "(multiples of 32; default: the run's crop)")
    p.add_argument('--stride', help='HEIGHT,WIDTH between windows '
                   '(default: 2/3 of the window)')
    p.add_argument('images', nargs='+')
    p = sub.add_parser('evaluate', help='whole-image pixel acc, mean acc, '
                       "mIoU, fw IoU; or the chapter's crop accuracy")
    p.add_argument('--run', required=True)
    p.add_argument('--data', default='synthetic')
    p.add_argument('--data-dir', default='data')
    p.add_argument('--split', choices=('train', 'val'), default='val')
    p.add_argument('--labels', choices=('d2l', 'voc'), default='voc',
                   help="'voc': the border is ignored (default); 'd2l': "
                        'it is background, as in the textbook')
    p.add_argument('--json', help='write the figures to this JSON file, '
                   'with an IoU bar chart and a best/worst grid beside it')
    p.add_argument('--window', help="sliding window HEIGHT,WIDTH "
                   "(default: the run's crop)")
    p.add_argument('--stride', help='HEIGHT,WIDTH between windows')
    p.add_argument('--device', default='cpu:0')
    p.add_argument('--crops', action='store_true',
                   help="the chapter's test accuracy on random crops")
    p.add_argument('--batch-size', type=int, help='with --crops')
    p.add_argument('--seed', type=int, default=0, help='with --crops')
    add_compare_args(sub.add_parser(
        'compare', help='train the MXNet and the PyTorch chapter side by '
        'side (needs torch: the compare extra)'))
    return parser


def add_compare_args(p):
    p.add_argument('--settings', choices=('textbook', 'matched'),
                   default='textbook',
                   help="'textbook': each framework as its chapter has it;"
                        " 'matched': the same backbone and update")
    p.add_argument('--backbone', default='resnet18_v1',
                   choices=('resnet18_v1', 'resnet18_v2'),
                   help='both frameworks\' backbone under matched')
    p.add_argument('--data', default='synthetic')
    p.add_argument('--data-dir', default='data')
    p.add_argument('--out', default=os.path.join('runs', 'compare'))
    p.add_argument('--steps', type=int, help='default: --epochs epochs')
    p.add_argument('--epochs', type=int, default=1)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--crop', default='320,480', help='HEIGHT,WIDTH')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--classes', help='as for train')
    p.add_argument('--lr', type=float, default=0.1,
                   help='both learning rates under matched (default 0.1)')
    p.add_argument('--dtype', choices=('float32', 'float64'),
                   default='float32', help='float64 shows how much of a '
                   'gap is rounding')


def train_config(args):
    """The run's TrainConfig: the flags, or the saved one under --resume."""
    from .run import TrainConfig
    positive('--epochs', args.epochs)
    positive('--batch-size', args.batch_size)
    positive('--workers', args.workers, low=-1)
    positive('--synth-scale', args.synth_scale)
    if args.resume and os.path.isfile(os.path.join(args.out,
                                                   'config.json')):
        config = TrainConfig.from_json(os.path.join(args.out, 'config.json'))
        config.out = args.out
        if args.epochs:
            config.epochs = args.epochs
        return config
    return TrainConfig(
        data=args.data, out=args.out, epochs=args.epochs or 5,
        batch_size=args.batch_size, crop=parse_crop(args.crop), lr=args.lr,
        wd=args.wd, devices=args.devices, pretrained=args.pretrained,
        model_root=args.model_root, backbone=args.backbone, head=args.head,
        seed=args.seed, labels=args.labels,
        classes=parse_classes(args.classes), flip=args.flip,
        scale=parse_scale(args.scale),
        num_workers=args.workers, hybridize=not args.no_hybridize,
        chapter_layers=args.chapter_layers, data_dir=args.data_dir,
        synth_train=args.synth_train,
        synth_val=args.synth_val, synth_scale=args.synth_scale,
        kvstore=args.kvstore)


def cmd_synth(args):
    from .synthetic import make_synthetic_voc
    positive('--train', args.train)
    positive('--val', args.val)
    make_synthetic_voc(args.out, args.train, args.val, seed=args.seed,
                       binary=args.binary)
    print(f'wrote {args.train} train and {args.val} val examples to '
          f'{args.out}')
    return 0


def cmd_train(args):
    from .run import fit
    config = train_config(args)
    metrics = fit(config, resume=args.resume, overwrite=args.overwrite)
    if not metrics.get('rank'):
        print(f'run written to {config.out}')
    return 0


def launch_command(args):
    """The `train` arguments after `--`, checked to use a dist kvstore."""
    command = args.job[1:] if args.job[:1] == ['--'] else args.job
    if command[:1] != ['train']:
        raise FCNError('launch: give the job after --, e.g. -- train '
                       '--kvstore dist_sync ...')
    kvstore = build_parser().parse_args(command).kvstore
    if 'dist' not in kvstore:
        raise FCNError(f'launch: the workers would not talk to each other '
                       f'with --kvstore {kvstore}; pass --kvstore dist_sync')
    return command


def cmd_launch(args):
    from .launch import launch
    positive('--workers', args.workers)
    positive('--servers', args.servers)
    if args.launcher == 'ssh' and not args.hosts:
        raise FCNError('launch --launcher ssh: give the machines with '
                       '--hosts FILE')
    if args.hosts and not os.path.isfile(args.hosts):
        raise FCNError(f'--hosts {args.hosts}: no such file')
    launch(args.workers, args.servers, launch_command(args), args.hosts,
           args.launcher)
    return 0


def cmd_predict(args):
    from .predict import predict_files
    from .run import load_run, parse_devices
    window, stride = parse_windows(args)
    ctx = parse_devices(args.device)[0]
    net, config = load_run(args.run, ctx)
    failed = predict_files(net, config, args.images, args.out, ctx, window,
                           stride)
    return 1 if failed else 0


def cmd_evaluate(args):
    from .run import evaluate_run
    positive('--batch-size', args.batch_size)
    window, stride = parse_windows(args)
    evaluate_run(args.run, args.data, args.data_dir, args.split, args.labels,
                 args.json, window, stride, args.device, args.crops,
                 args.batch_size, args.seed)
    return 0


def cmd_compare(args):
    from .run import TrainConfig
    positive('--steps', args.steps)
    positive('--epochs', args.epochs)
    positive('--batch-size', args.batch_size)
    positive('--lr', args.lr)
    try:
        from .compare import run_compare
    except ImportError as e:
        raise FCNError(f'compare needs PyTorch ({e}): pip install '
                       "'gluon-fcn[compare]' (torch==2.13.0, CPU)")
    config = TrainConfig(data=args.data, data_dir=args.data_dir,
                         batch_size=args.batch_size,
                         crop=parse_crop(args.crop), seed=args.seed,
                         classes=parse_classes(args.classes))
    run_compare(config, args.settings, args.out, args.steps, args.epochs,
                args.backbone, args.dtype, args.lr)
    return 0


COMMANDS = {'synth': cmd_synth, 'train': cmd_train,
            'predict': cmd_predict, 'evaluate': cmd_evaluate,
            'compare': cmd_compare, 'launch': cmd_launch}


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except FCNError as e:
        if args.debug:
            raise
        print(f'gluon-fcn: error: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('gluon-fcn: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
