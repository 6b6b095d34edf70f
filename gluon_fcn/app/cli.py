"""`gluon-fcn`: argparse -> a config -> calls into the package.

The `train` flags are generated from `TrainConfig`, so `--help` shows the
one set of defaults. Users' mistakes end in one line, `gluon-fcn: error:
...`, and exit 2: argparse's own too (an unknown flag, 'x' for a number),
without its usage block (`--help` has it). The commands run with MXNet's
NumPy mode on (the 2nd edition's), switched on for the command only.
"""
import argparse
import contextlib
import os
import sys
import warnings

from ..compare import CONTROLS
from ..core import numeric
from ..core.labels import LABEL_CONVENTIONS
from ..errors import FCNError, WriteError
from . import interrupts
from .config import (TrainConfig, add_config_args, config_from_args,
                     parse_crop, parse_pair)
from .engine import SYNCHRONOUS, rerun_synchronously
from .locks import file_lock, folder_lock
from .parsing import ParseError, Parser
from .reproduce import add_reproduce_args

DEFAULTS = TrainConfig()
# compare trains three or more nets side by side: a smaller batch than the
# chapter's keeps a step to seconds on a CPU
COMPARE_BATCH_SIZE = 8
COMPARE_FIELDS = ('data', 'data_dir', 'crop', 'seed', 'classes',
                  'synth_train', 'synth_val', 'synth_scale')


class Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` as a reference: each flag's meaning, then its default;
    'required' for required flags (or 'required: one of' those of a
    required group), 'off' for switches, and help that says its own
    default (what None means) is left as it is."""

    def add_usage(self, usage, actions, groups, prefix=None):
        self.one_of = {a: g._group_actions for g in groups if g.required
                       for a in g._group_actions}
        super().add_usage(usage, actions, groups, prefix)

    def _get_help_string(self, action):
        text = action.help or ''
        if not action.option_strings or 'default' in text or \
                action.dest == 'help':
            return text
        group = getattr(self, 'one_of', {}).get(action)
        if group:
            flags = ', '.join(a.option_strings[-1] for a in group)
            return f'{text} (required: one of {flags})'
        if action.required:
            return f'{text} (required)'
        if action.nargs == 0:  # store_true / store_false
            return f'{text} (default: off)'
        return super()._get_help_string(action)


def optional_count(flag, value):
    """A flag whose default is None: a positive integer when given."""
    return value if value is None else numeric.count(flag, value)


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
    """--data and --data-dir, as train has them."""
    add_config_args(p, names=('data', 'data_dir'))


def add_window_args(p):
    p.add_argument('--window', metavar='H,W', help='sliding window, '
                   "multiples of 32 (default: the run's crop; 480,480 for "
                   'a zoo model; an ONNX file\'s input size)')
    p.add_argument('--stride', metavar='H,W', help='step between windows '
                   '(default: 2/3 of the window)')


def add_train_args(p):
    add_config_args(p)
    p.add_argument('--resume', action='store_true',
                   help='continue the run in --out from its last epoch')
    p.add_argument('--overwrite', action='store_true',
                   help='replace the run in --out')


def add_synth_args(p):
    p.add_argument('--out', metavar='DIR',
                   default=os.path.join(DEFAULTS.data_dir, 'synthetic'),
                   help='the folder to write')
    p.add_argument('--train', type=int, metavar='N',
                   default=DEFAULTS.synth_train, help='training images')
    p.add_argument('--val', type=int, metavar='N',
                   default=DEFAULTS.synth_val, help='validation images')
    p.add_argument('--seed', type=int, metavar='N', default=DEFAULTS.seed,
                   help='seed of the shapes, textures and sizes')
    p.add_argument('--binary', action='store_true',
                   help='label every object 1: object / background, with '
                   'a classes.txt')


def add_launch_args(p):
    p.add_argument('--workers', type=int, metavar='N', required=True,
                   help='worker processes, each training on its shard')
    p.add_argument('--servers', type=int, metavar='N', default=1,
                   help='parameter server processes')
    p.add_argument('--hosts', metavar='FILE', help='hosts file, one host '
                   'a line, for --launcher ssh (default: none)')
    p.add_argument('--launcher', choices=('local', 'ssh'), default='local',
                   help="'local': every role on this machine; 'ssh': on "
                   'the --hosts in turn')
    p.add_argument('job', nargs=argparse.REMAINDER,
                   help='-- train ... --kvstore dist_sync: the command '
                   'each worker runs')


def add_net_args(p, onnx=False):
    """The net: --run, --model (with --model-root, --params) or --onnx."""
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument('--run', metavar='DIR', help='a finished run '
                       'folder')
    which.add_argument('--model', metavar='NAME', help="a pretrained FCN "
                       "of gluoncv's model zoo: fcn_resnet101_voc, "
                       'fcn_resnet101_coco, fcn_resnet50_ade, '
                       'fcn_resnet101_ade (or fcn_resnet50_voc with '
                       "--params); or torchvision's, built in Gluon: "
                       'torchvision:fcn_resnet101, '
                       'torchvision:fcn_resnet50')
    if onnx:
        which.add_argument('--onnx', metavar='FILE', help='an exported '
                           'ONNX model, run by onnxruntime')
    p.add_argument('--model-root', metavar='DIR', help='with --model: '
                   'where its weights are kept (default: ~/.mxnet/models; '
                   "torchvision's: $TORCH_HOME/hub/checkpoints, "
                   '~/.cache/torch/hub/checkpoints)')
    p.add_argument('--params', metavar='FILE', help='with --model: weights '
                   "saved from that architecture (torchvision's: a .pth "
                   "of its state_dict) (default: the zoo's)")


def check_net_args(args):
    """--model-root and --params belong to --model."""
    if (args.model_root or args.params) and not args.model:
        flag = '--params' if args.params else '--model-root'
        raise FCNError(f'{flag}: goes with --model NAME')


def add_export_args(p):
    add_net_args(p)
    p.add_argument('--format', choices=('mxnet', 'onnx'), required=True,
                   help="'mxnet': PATH-symbol.json and PATH-0000.params; "
                        "'onnx': the file PATH")
    p.add_argument('--out', required=True, metavar='PATH',
                   help='where to write')
    p.add_argument('--shape', metavar='H,W', help='input size, multiples '
                   "of 32 (default: the run's crop, or 480,480 for a zoo "
                   'model)')
    p.add_argument('--dynamic', action='store_true', help='onnx: any '
                   'batch size, height and width')
    add_precision_arg(p)


def add_precision_arg(p):
    from ..fast.precision import CHOICES
    p.add_argument('--precision', choices=CHOICES,
                   default='fp32', help="the backbone's arithmetic on the "
                   'CPU: bf16 and int8 are faster where the CPU has the '
                   'units (bf16: AMX, or AVX-512 BF16 on AMD; int8: AMX, '
                   'VNNI), else fp32, or slower with a note; int8 is '
                   "calibrated once on the run's training images; 'auto' "
                   'measures once per CPU the fastest that keeps 99%% of '
                   "the pixels' classes")


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
    add_net_args(p, onnx=True)
    p.add_argument('--out', required=True, metavar='DIR',
                   help='folder for the masks and overlays')
    p.add_argument('--device', default='cpu:0', help='cpu:N or gpu:N')
    add_precision_arg(p)
    add_window_args(p)
    p.add_argument('images', nargs='+', help='image files, any size, or '
                   'folders of them (their image files, by name)')


def add_evaluate_args(p):
    add_net_args(p)
    add_data_args(p)
    p.add_argument('--split', choices=('train', 'val'), default='val',
                   help='which split to score')
    p.add_argument('--labels', choices=LABEL_CONVENTIONS, default='voc',
                   help="'voc': the border is ignored; 'd2l': it is "
                        'background, as in the textbook')
    p.add_argument('--json', metavar='FILE', help='write the figures to '
                   'this JSON file, with an IoU bar chart and a best/worst '
                   'grid beside it (default: none written)')
    add_window_args(p)
    p.add_argument('--device', default='cpu:0', help='cpu:N or gpu:N')
    p.add_argument('--crops', action='store_true',
                   help="the chapter's test accuracy on random crops "
                        'instead of whole images')
    p.add_argument('--batch-size', type=int, metavar='N',
                   help="with --crops: crops a batch (default: the run's)")
    p.add_argument('--seed', type=int, metavar='N', default=DEFAULTS.seed,
                   help='with --crops: seed of the crops')
    add_precision_arg(p)


def add_compare_args(p):
    p.add_argument('--settings', choices=('textbook', 'matched'),
                   default='textbook',
                   help="'textbook': each framework as its chapter has it;"
                        " 'matched': the same backbone and update, and "
                        'the --controls')
    p.add_argument('--backbone', default='resnet18_v1',
                   choices=('resnet18_v1', 'resnet18_v2'),
                   help="both frameworks' backbone under matched")
    add_config_args(p, names=COMPARE_FIELDS)
    p.add_argument('--out', default=os.path.join('runs', 'compare'),
                   metavar='DIR',
                   help='folder for compare.json and compare.png')
    p.add_argument('--steps', type=int, metavar='N',
                   help='training steps (default: --epochs epochs)')
    p.add_argument('--epochs', type=int, metavar='N', default=1,
                   help='training epochs, when --steps is not given')
    p.add_argument('--batch-size', type=int, metavar='N',
                   default=COMPARE_BATCH_SIZE, help='examples a step')
    p.add_argument('--lr', type=float, default=DEFAULTS.lr,
                   help="both learning rates under matched (textbook: "
                   "each chapter's, 0.1 and 0.001)")
    p.add_argument('--controls', type=int, metavar='N', default=CONTROLS,
                   help='under matched: Gluon runs again from its weights '
                   'x (1 + eps noise), eps the machine epsilon of --dtype, '
                   'one noise seed each: how far rounding alone carries a '
                   'run')
    p.add_argument('--dtype', choices=('float32', 'float64'),
                   default='float32', help='float64 shows how much of a '
                   'gap is rounding (runs on MXNet\'s naive engine)')


def build_parser():
    parser = Parser(
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
             'run, a pretrained zoo model or an exported ONNX file'),
            ('evaluate', add_evaluate_args, 'whole-image pixel acc, mean '
             "acc, mIoU, fw IoU of a run; or the chapter's crop accuracy"),
            ('export', add_export_args, 'write a run or a zoo model as '
             'MXNet symbol files or ONNX, checked against MXNet'),
            ('compare', add_compare_args, 'train the MXNet and the '
             'PyTorch chapter side by side (needs the compare extra)'),
            ('reproduce', add_reproduce_args, "the book's run of an "
             "edition through its own code, with a plan, a report and a "
             'verdict')):
        add(subcommand(sub, name, help))
    return parser


def subcommands(parser=None):
    """{name: parser} of gluon-fcn's subcommands (of `build_parser()` by
    default), in the order --help lists them."""
    parser = parser or build_parser()
    return next(dict(a.choices) for a in parser._actions
                if isinstance(a, argparse._SubParsersAction))


def flags(parser):
    """The option strings of `parser`, --help aside."""
    return [s for a in parser._actions if a.dest != 'help'
            for s in a.option_strings]


def one_device(spec):
    """--device names one device (checked before a net loads)."""
    from .devices import parse_device
    return parse_device(spec)


# what a resumed run takes from the command line where given there
RESUME_FLAGS = ('epochs', 'keep_checkpoints')


def train_config(args):
    """The run's TrainConfig: the flags, or the saved one under --resume
    (with the `RESUME_FLAGS` given on the line), checked."""
    config = config_from_args(args)
    saved = os.path.join(args.out, 'config.json')
    if args.resume and os.path.isfile(saved):
        given = config
        config = TrainConfig.from_json(saved)
        config.out = args.out
        for name in RESUME_FLAGS:
            flag = '--' + name.replace('_', '-')
            if any(a == flag or a.startswith(f'{flag}=')
                   for a in args.argv):
                setattr(config, name, getattr(given, name))
    return config


def cmd_synth(args):
    from ..core.synthetic import make_synthetic_voc
    numeric.count('--train', args.train)
    numeric.count('--val', args.val)
    numeric.seed('--seed', args.seed)
    try:
        make_synthetic_voc(args.out, args.train, args.val, seed=args.seed,
                           binary=args.binary)
    except WriteError as e:
        raise FCNError(f'--out {args.out}: {e}') from e
    print(f'wrote {args.train} train and {args.val} val examples to '
          f'{args.out}')
    return 0


def cmd_train(args):
    from .fit import fit
    config = train_config(args)
    with interrupts.explained_stops(config, args.argv), precision_notes():
        metrics = fit(config, resume=args.resume, overwrite=args.overwrite)
    if not metrics.get('rank'):
        print(f'run written to {config.out}')
    return 0


def launch_command(args):
    """The `train` arguments after `--`, checked to use a dist kvstore
    and to hold numbers that make sense (before any process starts)."""
    command = args.job[1:] if args.job[:1] == ['--'] else args.job
    if command[:1] != ['train']:
        raise FCNError('launch: give the job after --, e.g. -- train '
                       '--kvstore dist_sync ...')
    job = build_parser().parse_args(command)
    config_from_args(job)
    kvstore = job.kvstore
    if 'dist' not in kvstore:
        raise FCNError(f'launch: the workers would not talk to each other '
                       f'with --kvstore {kvstore}; pass --kvstore dist_sync')
    return command


def cmd_launch(args):
    from ..dist.launch import launch
    numeric.count('--workers', args.workers)
    numeric.count('--servers', args.servers)
    if args.launcher == 'ssh' and not args.hosts:
        raise FCNError('launch --launcher ssh: give the machines with '
                       '--hosts FILE')
    if args.hosts and not os.path.isfile(args.hosts):
        raise FCNError(f'--hosts {args.hosts}: no such file')
    launch(args.workers, args.servers, launch_command(args), args.hosts,
           args.launcher)
    return 0


def cmd_predict(args):
    from .inference import (open_net, precision_line, predict_files,
                            print_choice)
    check_net_args(args)
    window, stride = parse_windows(args)
    ctx = one_device(args.device)
    with folder_lock(args.out):  # one writer: masks of one net only
        with precision_notes():
            net, legend, window = open_net(
                args.run, args.model, args.onnx, args.model_root,
                args.params, ctx, window, args.precision)
        print_choice(net, args.run)
        print(f'predicting in {precision_line(net, ctx)}')
        # a run and its ONNX export print alike; a zoo model as the
        # material
        failed = predict_files(net, legend, args.images, args.out, window,
                               stride, ctx, details=bool(args.model))
    return 1 if failed else 0


def cmd_evaluate(args):
    from .inference import evaluate_model, evaluate_run
    check_net_args(args)
    optional_count('--batch-size', args.batch_size)
    numeric.seed('--seed', args.seed)
    one_device(args.device)
    if args.batch_size and not args.crops:
        raise FCNError('--batch-size: only with --crops (whole images go '
                       'one at a time)')
    window, stride = parse_windows(args)
    if args.model and args.crops:
        raise FCNError('--crops: goes with --run (the crops are the run\'s)')
    with file_lock(args.json, '--json') if args.json else \
            contextlib.nullcontext():  # its figures from one process
        if args.model:
            evaluate_model(args.model, args.model_root, args.params,
                           args.data, args.data_dir, args.split,
                           args.labels, args.json, window, stride,
                           args.device)
        else:
            with precision_notes():
                evaluate_run(args.run, args.data, args.data_dir,
                             args.split, args.labels, args.json, window,
                             stride, args.device, args.crops,
                             args.batch_size, args.seed, args.precision)
    return 0


def cmd_export(args):
    from .exporting import export_net
    check_net_args(args)
    shape = args.shape and parse_crop(args.shape, '--shape')
    if args.dynamic and args.format != 'onnx':
        raise FCNError('--dynamic: goes with --format onnx (MXNet symbol '
                       'files take any input size)')
    with precision_notes():
        export_net(args.run, args.model, args.model_root, args.params,
                   args.format, args.out, shape, args.dynamic,
                   args.precision)
    return 0


def cmd_compare(args):
    optional_count('--steps', args.steps)
    numeric.count('--controls', args.controls)
    config = config_from_args(args)
    if args.dtype == 'float64' and \
            os.environ.get('MXNET_ENGINE_TYPE') != SYNCHRONOUS:
        return rerun_synchronously(args.argv)
    try:
        from .comparing import run_compare
    except ImportError as e:
        raise FCNError(f'compare needs PyTorch ({e}): pip install '
                       "'gluon-fcn[compare]' (torch==2.13.0, CPU)")
    run_compare(config, args.settings, args.out,
                args.steps, args.backbone, args.dtype, args.controls)
    return 0


def cmd_reproduce(args):
    from .reproduce import cmd_reproduce
    return cmd_reproduce(args)


COMMANDS = {'synth': cmd_synth, 'train': cmd_train,
            'predict': cmd_predict, 'evaluate': cmd_evaluate,
            'compare': cmd_compare, 'launch': cmd_launch,
            'export': cmd_export, 'reproduce': cmd_reproduce}


@contextlib.contextmanager
def numpy_semantics():
    """MXNet's NumPy array and shape semantics, for this command only."""
    from mxnet import util
    with util.np_shape(True), util.np_array(True):
        yield


def fail(error):
    """The one line of an `FCNError`; exit status 2."""
    print(f'gluon-fcn: error: {error}', file=sys.stderr)
    return 2


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except ParseError as e:
        if '--debug' in argv:
            raise
        return fail(e)
    args.argv = argv
    try:
        with numpy_semantics(), interrupts.signals_interrupt():
            return COMMANDS[args.command](args)
    except FCNError as e:
        if args.debug:
            raise
        return fail(e)
    except KeyboardInterrupt as e:  # SIGINT, SIGTERM: what was kept
        print(f'gluon-fcn: {interrupts.describe(e)}', file=sys.stderr)
        return interrupts.exit_status(e)


if __name__ == '__main__':
    sys.exit(main())
