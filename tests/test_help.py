"""The command line as a reference: --help gives every flag a meaning and
a default (the config's), --debug goes anywhere on the line, and each
error names a flag of the subcommand in use."""
import argparse
import dataclasses
import re

import pytest

from gluon_fcn.app.cli import (COMPARE_FIELDS, build_parser, flags, main,
                               subcommands)
from gluon_fcn.app.config import TrainConfig, flag_of
from gluon_fcn.errors import FCNError


def help_entries(parser):
    """{flag: its help as --help prints it, defaults filled in}."""
    formatter = parser._get_formatter()
    formatter.add_usage(None, parser._actions,
                        parser._mutually_exclusive_groups)
    entries = {}
    for action in parser._actions:
        if action.dest == 'help' or not action.option_strings:
            continue
        text = formatter._get_help_string(action)
        text = text % dict(vars(action), prog=parser.prog)
        entries[action.option_strings[-1]] = text
    return entries


@pytest.mark.parametrize('name', ['gluon-fcn'] + list(subcommands()))
def test_every_flag_has_a_meaning_and_a_default(name):
    parser = build_parser() if name == 'gluon-fcn' else subcommands()[name]
    entries = help_entries(parser)
    assert entries
    for flag, text in entries.items():
        meaning = re.split(r' \((default|required)', text)[0]
        assert len(meaning.split()) >= 2, flag  # words, not a bare name
        assert 'default' in text or '(required' in text, flag
        assert '(default: None)' not in text, flag
    assert '(default: None)' not in parser.format_help()


def test_train_and_compare_show_the_config_s_defaults():
    """The defaults --help prints are TrainConfig's: train takes them all,
    compare those it shares."""
    config = TrainConfig()
    for name, fields in (('train', [f.name for f in
                                    dataclasses.fields(TrainConfig)]),
                         ('compare', COMPARE_FIELDS)):
        entries = help_entries(subcommands()[name])
        for field in dataclasses.fields(TrainConfig):
            if field.name not in fields:
                continue
            value = getattr(config, field.name)
            if isinstance(value, bool):
                flag = flag_of(field) if not value else \
                    f'--no-{flag_of(field)[2:]}'
                assert entries[flag].endswith('(default: off)')
            elif value is not None:
                shown = ','.join(map(str, value)) \
                    if isinstance(value, tuple) else str(value)
                assert entries[flag_of(field)].endswith(
                    f'(default: {shown})'), field.name


@pytest.mark.parametrize('argv', [
    ['--debug', 'predict', '--run', '/no/run', '--out', 'x', 'a.jpg'],
    ['predict', '--debug', '--run', '/no/run', '--out', 'x', 'a.jpg'],
    ['predict', '--run', '/no/run', '--out', 'x', 'a.jpg', '--debug'],
    ['train', '--data', '/no/such/folder', '--out', '/no/run', '--debug'],
    ['compare', '--steps', '0', '--debug'],
])
def test_debug_shows_the_traceback_wherever_it_stands(argv, capsys):
    with pytest.raises(FCNError):
        main(argv)
    without = [a for a in argv if a != '--debug']
    assert main(without) == 2
    assert capsys.readouterr().err.startswith('gluon-fcn: error: ')


def test_every_subcommand_takes_debug():
    for name, parser in subcommands().items():
        assert '--debug' in flags(parser), name


@pytest.mark.parametrize('argv, message', [
    (['train', '--crop', '100,128'], '--crop 100,128: both sides must be'),
    (['train', '--crop', 'big'], '--crop big: write HEIGHT,WIDTH'),
    (['train', '--epochs', '0'], '--epochs must be a positive integer, got 0'),
    (['train', '--batch-size', '-1'],
     '--batch-size must be a positive integer, got -1'),
    (['train', '--devices', 'tpu:0'], "--devices: cannot read 'tpu:0'"),
    (['train', '--data', '/no/such/folder'], '--data: /no/such/folder is'),
    (['train', '--classes', 'one'], '--classes one: give at least two'),
    (['train', '--scale', '2,1'], '--scale 2,1: need 0 < LOW <= HIGH'),
    (['predict', '--run', '/no/run', '--out', 'x', 'a.jpg'],
     '--run /no/run: not a run folder'),
    (['predict', '--run', '/no/run', '--out', 'x', '--window', '100,96',
      'a.jpg'], '--window 100,96: both sides must be'),
    (['predict', '--run', '/no/run', '--out', 'x', '--stride', '0,5',
      'a.jpg'], '--stride 0,5: both sides must be positive'),
    (['predict', '--run', '/no/run', '--out', 'x', '--device', 'gpu:0',
      'a.jpg'], '--device: gpu:0 does not exist here'),
    (['predict', '--run', '/no/run', '--out', 'x', '--device', 'tpu:0',
      'a.jpg'], "--device: cannot read 'tpu:0'"),
    (['evaluate', '--run', '/no/run', '--device', 'cpu:0,cpu:1'],
     '--device cpu:0,cpu:1: give one device'),
    (['predict', '--run', '/no/run', '--out', 'x', '--device',
      'cpu:0,cpu:1', 'a.jpg'], '--device cpu:0,cpu:1: give one device'),
    (['predict', '--run', '/no/run', '--out', 'x', '--params', 'p.params',
      'a.jpg'], '--params: goes with --model'),
    (['evaluate', '--model', 'fcn_resnet101_voc', '--crops'],
     '--crops: goes with --run'),
    (['export', '--run', '/no/run', '--format', 'mxnet', '--out', 'x',
      '--dynamic'], '--dynamic: goes with --format onnx'),
    (['export', '--run', '/no/run', '--format', 'onnx', '--out', 'x',
      '--shape', '100,100'], '--shape 100,100: both sides must be'),
    (['evaluate', '--run', '/no/run', '--device', 'gpu:3'],
     '--device: gpu:3 does not exist here'),
    (['evaluate', '--run', '/no/run', '--window', '100,96'],
     '--window 100,96: both sides must be'),
    (['evaluate', '--run', '/no/run', '--stride', '0,5'],
     '--stride 0,5: both sides must be positive'),
    (['evaluate', '--run', '/no/run', '--batch-size', '4'],
     '--batch-size: only with --crops'),
    (['evaluate', '--run', '/no/run', '--crops', '--batch-size', '0'],
     '--batch-size must be a positive integer, got 0'),
    (['evaluate', '--run', '/no/run'], '--run /no/run: not a run folder'),
    (['train', '--devices', 'gpu:0'], '--devices: gpu:0 does not exist'),
    (['train', '--synth-train', '0'],
     '--synth-train must be a positive integer, got 0'),
    (['train', '--keep-checkpoints', '-1'],
     '--keep-checkpoints must be a non-negative integer, got -1'),
    (['train', '--data-dir', '/proc/no/such', '--synth-train', '3',
      '--synth-val', '2'], '--data-dir /proc/no/such: no such file or '
     'directory while creating /proc/no/such/'),
    (['compare', '--data', '/no/such/folder'],
     '--data: /no/such/folder is not a folder'),
    (['compare', '--synth-scale', '0'],
     '--synth-scale must be a positive finite number, got 0.0'),
    (['compare', '--classes', 'one'], '--classes one: give at least two'),
    (['compare', '--lr', '0'], '--lr must be a positive finite number'),
    (['synth', '--val', '0'], '--val must be a positive integer, got 0'),
    (['synth', '--out', '/proc/no/such'], '--out /proc/no/such: no such '
     'file or directory while creating /proc/no/such/JPEGImages'),
    (['launch', '--workers', '0', '--', 'train'],
     '--workers must be a positive integer, got 0'),
    (['launch', '--workers', '1', '--launcher', 'ssh', '--', 'train'],
     'launch --launcher ssh: give the machines with --hosts'),
    (['reproduce', '--edition', 'd2l', '--voc-sha1', 'xyz'],
     '--voc-sha1 xyz: not a sha1 (40 hex digits)'),
    (['reproduce', '--edition', 'v1', '--backbone-params', 'r.pth'],
     '--backbone-params r.pth: no such file'),
    (['reproduce', '--edition', 'pytorch', '--voc-tar', '/no/voc.tar'],
     '--voc-tar /no/voc.tar: no such file'),
    (['reproduce', '--edition', 'book3'], "argument --edition: invalid "
     "choice: 'book3'"),
])
def test_errors_are_one_line_naming_a_flag_of_the_subcommand(
        argv, message, tmp_path, capsys):
    """Exit 2, one line, `gluon-fcn: error: ...` naming the flag or the
    file at fault; every flag it names is one the subcommand has; nothing
    is left behind."""
    if argv[0] == 'train':
        argv = argv + ['--out', str(tmp_path / 'run')]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'gluon-fcn: error: {message}')
    assert len(err.splitlines()) == 1
    own = set(flags(subcommands()[argv[0]]))
    if argv[0] == 'launch':  # the job after -- is a train command
        own |= set(flags(subcommands()['train']))
    named = set(re.findall(r'(?<![\w-])--[a-z][a-z0-9-]*', err))
    assert named <= own, named - own
    assert not (tmp_path / 'run').exists()


# NaN, the infinities, and zero or negative values where they make no
# sense (issue 25): every numeric flag of every subcommand
RUN = ['--run', '/no/run']
NUMBERS = [
    ('train', [], '--lr', 'nan', '--lr must be a positive finite number, '
     'got nan'),
    ('train', [], '--lr', 'inf', 'got inf'),
    ('train', [], '--lr', '-0.1', 'got -0.1'),
    ('train', [], '--lr', '1e-400', 'got 0.0'),
    ('train', [], '--wd', 'nan', '--wd must be a non-negative finite number'),
    ('train', [], '--wd', '-inf', 'got -inf'),
    ('train', [], '--epochs', 'nan', "argument --epochs: invalid int value: "
     "'nan'"),
    ('train', [], '--batch-size', '0', '--batch-size must be a positive '
     'integer'),
    ('train', [], '--crop', 'nan,480', '--crop nan,480: write HEIGHT,WIDTH'),
    ('train', [], '--crop', '0,480', '--crop 0,480: both sides must be '
     'positive'),
    ('train', [], '--scale', 'nan,2', '--scale nan,2: need 0 < LOW <= HIGH, '
     'both finite'),
    ('train', [], '--scale', '0.5,inf', 'both finite'),
    ('train', [], '--scale', '0,1', 'need 0 < LOW'),
    ('train', [], '--seed', '-1', '--seed must be an integer from 0 to '
     '4294967295, got -1'),
    ('train', [], '--seed', str(2 ** 32), 'got 4294967296'),
    ('train', [], '--workers', '-1', '--workers must be a non-negative '
     'integer, got -1'),
    ('train', [], '--synth-train', '-3', '--synth-train must be a positive '
     'integer'),
    ('train', [], '--synth-val', '0', '--synth-val must be a positive '
     'integer'),
    ('train', [], '--synth-scale', 'nan', '--synth-scale must be a positive '
     'finite number, got nan'),
    ('train', [], '--synth-scale', 'inf', 'got inf'),
    ('synth', [], '--train', '0', '--train must be a positive integer'),
    ('synth', [], '--val', 'inf', "argument --val: invalid int value"),
    ('synth', [], '--seed', '-2', '--seed must be an integer from 0'),
    ('launch', ['--workers', '1'], '--servers', '0', '--servers must be a '
     'positive integer'),
    ('launch', [], '--workers', '-1', '--workers must be a positive'),
    ('launch', ['--workers', '2', '--', 'train'], '--lr', 'nan',
     '--lr must be a positive finite number, got nan'),
    ('predict', RUN + ['--out', 'x'], '--window', 'nan,32',
     '--window nan,32: write HEIGHT,WIDTH'),
    ('predict', RUN + ['--out', 'x'], '--stride', '0,16',
     '--stride 0,16: both sides must be positive'),
    ('evaluate', RUN + ['--crops'], '--batch-size', '-1',
     '--batch-size must be a positive integer'),
    ('evaluate', RUN, '--seed', '-1', '--seed must be an integer from 0'),
    ('evaluate', RUN, '--window', '-32,32', '--window -32,32: both sides'),
    ('export', RUN + ['--format', 'onnx', '--out', 'x'], '--shape', '0,0',
     '--shape 0,0: both sides must be positive'),
    ('compare', [], '--lr', 'nan', '--lr must be a positive finite number, '
     'got nan'),
    ('compare', [], '--steps', '0', '--steps must be a positive integer'),
    ('compare', [], '--epochs', '-1', '--epochs must be a positive integer'),
    ('compare', [], '--batch-size', '0', '--batch-size must be a positive'),
    ('compare', [], '--controls', '-1', '--controls must be a positive'),
    ('compare', [], '--crop', '31,32', '--crop 31,32: both sides must be'),
    ('compare', [], '--seed', '-1', '--seed must be an integer from 0'),
    ('compare', [], '--synth-train', '0', '--synth-train must be a positive'),
    ('compare', [], '--synth-val', '-1', '--synth-val must be a positive'),
    ('compare', [], '--synth-scale', '-inf', '--synth-scale must be a '
     'positive finite number, got -inf'),
    ('reproduce', ['--edition', 'v1'], '--epochs', '0', '--epochs must be '
     'a positive integer, got 0'),
    ('reproduce', ['--edition', 'd2l'], '--batch-size', '-1',
     '--batch-size must be a positive integer'),
    ('reproduce', ['--edition', 'pytorch'], '--crop', 'nan,480',
     '--crop nan,480: write HEIGHT,WIDTH'),
]


@pytest.mark.parametrize('command, before, flag, value, message', NUMBERS)
def test_numbers_that_make_no_sense_are_one_line(command, before, flag,
                                                 value, message, tmp_path,
                                                 capsys):
    """Exit 2 and one line naming the flag: no traceback (`--lr nan`
    was MXNet's multi_sgd_update), no usage block."""
    argv = [command, *before, f'{flag}={value}']
    if command == 'train':
        argv += ['--out', str(tmp_path / 'run')]
    if command == 'launch' and '--' not in argv:
        argv += ['--', 'train']
    if command == 'predict':
        argv.append('a.jpg')
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith('gluon-fcn: error: '), err
    assert message in err and flag in err
    assert len(err.splitlines()) == 1, err
    assert not (tmp_path / 'run').exists()


def test_argparse_s_own_errors_are_one_line_too(capsys):
    for argv in (['train', '--bogus'], ['trian'], ['predict']):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith('gluon-fcn: error: ') and \
            len(err.splitlines()) == 1, err
    with pytest.raises(FCNError, match='unknown flag --bogus'):
        main(['train', '--bogus', '--debug'])


def test_the_formatter_marks_required_flags_and_switches():
    parser = argparse.ArgumentParser(formatter_class=type(
        build_parser()._get_formatter()))
    parser.add_argument('--need', required=True, help='a thing it needs')
    parser.add_argument('--flag', action='store_true', help='turn it on')
    parser.add_argument('--size', type=int, default=3, help='how many')
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument('--this', help='one way')
    which.add_argument('--that', help='another')
    entries = help_entries(parser)
    assert entries == {'--need': 'a thing it needs (required)',
                       '--flag': 'turn it on (default: off)',
                       '--size': 'how many (default: 3)',
                       '--this': 'one way (required: one of --this, --that)',
                       '--that': 'another (required: one of --this, --that)'}
    assert 'one way (required: one of --this, --that)' in ' '.join(
        parser.format_help().split())


@pytest.mark.parametrize('argv, message', [
    (['train', '--epoch', '0'],
     'unknown flag --epoch (did you mean --epochs?)'),
    (['train', '--epcohs', '3', '--out', 'x'],
     'unknown flag --epcohs (did you mean --epochs?)'),
    (['evaluate', '--run', 'r', '--labls', 'voc', '--jsn=e.json'],
     'unknown flags --labls (did you mean --labels?), --jsn (did you mean '
     '--json?)'),
    (['predict', '--run', 'r'],
     'the following arguments are required: --out, images'),
    (['train', '--epochs', 'two'],
     "argument --epochs: invalid int value: 'two'"),
])
def test_flags_are_taken_whole_and_a_typo_names_the_closest(argv, message,
                                                            capsys):
    """argparse would take `--epoch` for `--epochs`; here it is an error
    that names the flag meant, in one line without the usage block."""
    assert main(argv) == 2
    assert capsys.readouterr().err == f'gluon-fcn: error: {message}\n'


def test_no_parser_takes_a_prefix_of_a_flag():
    parsers = [build_parser()] + list(subcommands().values())
    assert not any(p.allow_abbrev for p in parsers)


def test_model_help_names_every_pretrained_model():
    """--model's help lists gluoncv's zoo FCNs and torchvision's, in
    every command that takes it."""
    from gluon_fcn.core.torchvision_fcn import ARCHITECTURES, PREFIX
    from gluon_fcn.core.zoo import zoo_names
    models = zoo_names() + [PREFIX + name for name in ARCHITECTURES]
    for command in ('predict', 'evaluate', 'export'):
        text = help_entries(subcommands()[command])['--model']
        text = ' '.join(text.split())
        for model in models:
            assert re.search(rf'(?<![\w:]){re.escape(model)}(?!\w)', text), \
                (command, model)
