"""`gluon-fcn`: argparse -> a config -> calls into the package.

The `train` flags are generated from `TrainConfig`, so `--help` shows the
one set of defaults. Users' mistakes end in one line, `gluon-fcn: error:
...`, and exit 2. The commands run with MXNet's NumPy mode on (the 2nd
edition's), switched on for the command only.
"""
import argparse
import contextlib
import os
import subprocess
import sys
import warnings

from ..errors import FCNError
from .config import (TrainConfig, add_config_args, config_from_args,
                     parse_classes, parse_crop, parse_pair)

Formatter = argparse.ArgumentDefaultsHelpFormatter
DEFAULTS = TrainConfig()


def positive(flag, value, low=0):
    """`value` must exceed `low` (be positive by default)."""
    if value is not None and value <= low:
        word = 'positive' if low == 0 else f'greater than {low}'
        raise FCNError(f'{flag} must be {word}, not {value}')
    return value


def parse_windows(args):
    """--window (multiples of 32) and --stride, each None when not given.
    """
    window = args.window and parse_crop(args.window, '--window')
    stride = args.stride and parse_pair(args.stride, '--stride')
    return window, stride


def subcommand(sub, name, help):
    """A subcommand parser that shows defaults and takes --debug."""
    p = sub.add_parser(name, help=help, description=help,
                       formatter_class=Formatter)
    p.add_argument('--debug', action='store_true', default=argparse.SUPPRESS,
                   help='show tracebacks instead of one-line errors')
    return p


def add_data_args(p):
    """--data and --data-dir, with train's defaults."""
    p.add_argument('--data', default=DEFAULTS.data,
                   help=TrainConfig.__dataclass_fields__['data']
                   .metadata['help'])
    p.add_argument('--data-dir', default=DEFAULTS.data_dir,
                   help="where 'synthetic' and 'voc2012' are kept")


def add_window_args(p):
    p.add_argument('--window', metavar='H,W', help='sliding window, '
                   "multiples of 32 (default: the run's crop)")
    p.add_argument('--stride', metavar='H,W', help='step between windows '
                   '(default: 2/3 of the window)')


def add_train_args(p):
    add_config_args(p)
    p.add_argument('--resume', action='store_true',
                   help='continue the run in --out from its last epoch')
    p.add_argument('--overwrite', action='store_true',
                   help='replace the run in --out')


def add_synth_args(p):
    p.add_argument('--out', default=os.path.join('data', 'synthetic'),
                   help='the folder to write')
    p.add_argument('--train', type=int, default=200,
                   help='training images')
    p.add_argument('--val', type=int, default=50, help='validation images')
    p.add_argument('--seed', type=int, default=0, help='random seed')
    p.add_argument('--binary', action='store_true',
                   help='label every object 1: object / background')


def add_launch_args(p):
    p.add_argument('--workers', type=int, required=True,
                   help='worker processes, each training on its shard')
    p.add_argument('--servers', type=int, default=1,
                   help='parameter server processes')
    p.add_argument('--hosts', help='hosts file, one host a line (ssh)')
    p.add_argument('--launcher', choices=('local', 'ssh'), default='local',
                   help="'local': every role on this machine")
    p.add_argument('job', nargs=argparse.REMAINDER,
                   help='-- train ... --kvstore dist_sync')


def add_precision_arg(p):
    from ..fast.precision import PRECISIONS
    p.add_argument('--precision', choices=PRECISIONS,
                   default='fp32', help="the backbone's arithmetic on the "
                   'CPU: bf16 and int8 are faster where the CPU has the '
                   'units (AMX, AVX-512 BF16 / VNNI), else fp32 with a '
                   "note; int8 is calibrated once on the run's training "
                   'images')


@contextlib.contextmanager
def precision_notes():
    """A precision the machine cannot run: one line, `gluon-fcn: note:`."""
    from ..fast.precision import PrecisionNote
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', PrecisionNote)
        yield
    for w in caught:
        if issubclass(w.category, PrecisionNote):
            print(f'gluon-fcn: note: {w.message}', file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename,
                                 w.lineno)


def add_predict_args(p):
    p.add_argument('--run', required=True, help='a finished run folder')
    p.add_argument('--out', required=True, help='folder for the masks')
    p.add_argument('--device', default='cpu:0', help='cpu:N or gpu:N')
    add_precision_arg(p)
    add_window_args(p)
    p.add_argument('images', nargs='+', help='image files, any size')


def add_evaluate_args(p):
    p.add_argument('--run', required=True, help='a finished run folder')
    add_data_args(p)
    p.add_argument('--split', choices=('train', 'val'), default='val',
                   help='which split to score')
    p.add_argument('--labels', choices=('d2l', 'voc'), default='voc',
                   help="'voc': the border is ignored; 'd2l': it is "
                        'background, as in the textbook')
    p.add_argument('--json', help='write the figures to this JSON file, '
                   'with an IoU bar chart and a best/worst grid beside it')
    add_window_args(p)
    p.add_argument('--device', default='cpu:0', help='cpu:N or gpu:N')
    p.add_argument('--crops', action='store_true',
                   help="the chapter's test accuracy on random crops "
                        'instead of whole images')
    p.add_argument('--batch-size', type=int,
                   help="with --crops (default: the run's)")
    p.add_argument('--seed', type=int, default=0,
                   help='with --crops: seed of the crops')
    add_precision_arg(p)


def add_compare_args(p):
    p.add_argument('--settings', choices=('textbook', 'matched'),
                   default='textbook',
                   help="'textbook': each framework as its chapter has it;"
                        " 'matched': the same backbone and update")
    p.add_argument('--backbone', default='resnet18_v1',
                   choices=('resnet18_v1', 'resnet18_v2'),
                   help="both frameworks' backbone under matched")
    add_data_args(p)
    p.add_argument('--out', default=os.path.join('runs', 'compare'),
                   help='folder for compare.json and compare.png')
    p.add_argument('--steps', type=int, help='training steps (default: '
                   '--epochs epochs)')
    p.add_argument('--epochs', type=int, default=1, help='training epochs')
    p.add_argument('--batch-size', type=int, default=8,
                   help='examples a step')
    p.add_argument('--crop', default='320,480', metavar='H,W',
                   help='random crop, multiples of 32')
    p.add_argument('--seed', type=int, default=0, help='random seed')
    p.add_argument('--classes', help='as for train')
    p.add_argument('--lr', type=float, default=0.1,
                   help='both learning rates under matched')
    p.add_argument('--dtype', choices=('float32', 'float64'),
                   default='float32', help='float64 shows how much of a '
                   'gap is rounding')


def build_parser():
    parser = argparse.ArgumentParser(
        prog='gluon-fcn', formatter_class=Formatter,
        description='Fully Convolutional Networks (d2l) in MXNet Gluon.')
    parser.add_argument('--debug', action='store_true',
                        help='show tracebacks instead of one-line errors')
    sub = parser.add_subparsers(dest='command', required=True)
    for name, add, help in (
            ('synth', add_synth_args, 'write the synthetic VOC dataset'),
            ('train', add_train_args, 'train an FCN into a run folder'),
            ('launch', add_launch_args, "run a distributed train on "
             "MXNet's parameter server: a scheduler, servers and workers"),
            ('predict', add_predict_args, 'segment images with a trained '
             'run'),
            ('evaluate', add_evaluate_args, 'whole-image pixel acc, mean '
             "acc, mIoU, fw IoU of a run; or the chapter's crop accuracy"),
            ('compare', add_compare_args, 'train the MXNet and the '
             'PyTorch chapter side by side (needs the compare extra)')):
        add(subcommand(sub, name, help))
    return parser


def train_config(args):
    """The run's TrainConfig: the flags, or the saved one under --resume
    (with --epochs when given on the line)."""
    positive('--epochs', args.epochs)
    positive('--batch-size', args.batch_size)
    positive('--workers', args.num_workers, low=-1)
    positive('--synth-scale', args.synth_scale)
    config = config_from_args(args)
    saved = os.path.join(args.out, 'config.json')
    if args.resume and os.path.isfile(saved):
        epochs = config.epochs
        config = TrainConfig.from_json(saved)
        config.out = args.out
        if any(a == '--epochs' or a.startswith('--epochs=')
               for a in args.argv):
            config.epochs = epochs
    return config


def cmd_synth(args):
    from ..core.synthetic import make_synthetic_voc
    positive('--train', args.train)
    positive('--val', args.val)
    make_synthetic_voc(args.out, args.train, args.val, seed=args.seed,
                       binary=args.binary)
    print(f'wrote {args.train} train and {args.val} val examples to '
          f'{args.out}')
    return 0


def cmd_train(args):
    from .runs import fit
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
    from ..dist.launch import launch
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
    from .inference import predict_files
    from .runs import load_run, parse_devices
    window, stride = parse_windows(args)
    ctx = parse_devices(args.device, '--device')[0]
    with precision_notes():
        net, config = load_run(args.run, ctx, precision=args.precision)
    failed = predict_files(net, config.classes, args.images, args.out,
                           window or config.crop, stride, ctx)
    return 1 if failed else 0


def cmd_evaluate(args):
    from .inference import evaluate_run
    positive('--batch-size', args.batch_size)
    window, stride = parse_windows(args)
    with precision_notes():
        evaluate_run(args.run, args.data, args.data_dir, args.split,
                     args.labels, args.json, window, stride, args.device,
                     args.crops, args.batch_size, args.seed, args.precision)
    return 0


# MXNet's threaded engine runs independent operators at once; in float64
# they call MXNet's bundled OpenBLAS (an OpenMP build) from two threads,
# which corrupts results now and then. The naive engine runs one at a time.
SYNCHRONOUS = 'NaiveEngine'


def rerun_synchronously(argv):
    """This command again in a process with MXNet's naive engine (the
    engine is chosen when MXNet loads); its exit status."""
    env = dict(os.environ, MXNET_ENGINE_TYPE=SYNCHRONOUS)
    return subprocess.run([sys.executable, '-m', 'gluon_fcn.app.cli'] +
                          argv, env=env).returncode


def cmd_compare(args):
    positive('--steps', args.steps)
    positive('--epochs', args.epochs)
    positive('--batch-size', args.batch_size)
    positive('--lr', args.lr)
    if args.dtype == 'float64' and \
            os.environ.get('MXNET_ENGINE_TYPE') != SYNCHRONOUS:
        return rerun_synchronously(args.argv)
    try:
        from .comparing import run_compare
    except ImportError as e:
        raise FCNError(f'compare needs PyTorch ({e}): pip install '
                       "'gluon-fcn[compare]' (torch==2.13.0, CPU)")
    config = TrainConfig(data=args.data, data_dir=args.data_dir,
                         batch_size=args.batch_size,
                         crop=parse_crop(args.crop), seed=args.seed,
                         classes=args.classes and
                         parse_classes(args.classes))
    run_compare(config, args.settings, args.out, args.steps, args.epochs,
                args.backbone, args.dtype, args.lr)
    return 0


COMMANDS = {'synth': cmd_synth, 'train': cmd_train,
            'predict': cmd_predict, 'evaluate': cmd_evaluate,
            'compare': cmd_compare, 'launch': cmd_launch}


@contextlib.contextmanager
def numpy_mode():
    """MXNet's NumPy array and shape semantics, for this command only."""
    from mxnet import util
    with util.np_shape(True), util.np_array(True):
        yield


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        with numpy_mode():
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
