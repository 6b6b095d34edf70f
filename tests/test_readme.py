"""README.md's command-line synopsis lists every subcommand and flag that
`gluon-fcn` has (`build_parser()`), and its claims that a test can hold
hold: `make demo`'s command, classes and folder size, and what a run
stopped before its first checkpoint leaves."""
import os
import re

import pytest

from gluon_fcn.app.cli import build_parser, flags, subcommands
from gluon_fcn.errors import FCNError

README = os.path.join(os.path.dirname(__file__), '..', 'README.md')


def synopsis(text):
    """The first code block of README's '## Command line' section."""
    parts = re.split(r'^## Command line\s*$', text, flags=re.M)
    assert len(parts) == 2, "README.md needs one '## Command line' section"
    section = re.split(r'^## ', parts[1], flags=re.M)[0]
    blocks = re.findall(r'^```[a-z]*\n(.*?)^```', section,
                        flags=re.M | re.S)
    assert blocks, "'## Command line' has no code block"
    return blocks[0]


def usages(block):
    """{subcommand: its synopsis text}: each `gluon-fcn NAME` line with the
    indented lines that continue it."""
    found, name = {}, None
    for line in block.splitlines():
        match = re.match(r'gluon-fcn (?:\[--debug\] )?([a-z]+)\b', line)
        if match:
            name = match.group(1)
            found[name] = found.get(name, '') + line + '\n'
        elif name and line.startswith((' ', '\t')):
            found[name] += line + '\n'
        else:
            name = None
    return found


def missing(text):
    """Subcommands and flags the synopsis in `text` leaves out, as
    'NAME' or 'NAME --flag'."""
    block = synopsis(text)
    lines = usages(block)
    gone = [f'gluon-fcn {flag}' for flag in flags(build_parser())
            if flag.startswith('--') and flag not in block]
    for name, parser in subcommands().items():
        if name not in lines:
            gone.append(name)
            continue
        gone += [f'{name} {flag}' for flag in flags(parser)
                 if flag.startswith('--') and flag != '--debug' and
                 not re.search(rf'(?<![\w-]){re.escape(flag)}(?![\w-])',
                               lines[name])]
    return gone


def test_synopsis_lists_every_subcommand_and_flag():
    with open(README) as f:
        assert missing(f.read()) == []


def test_a_flag_left_out_is_found():
    """The check itself: a synopsis without train's --wd is caught."""
    text = ('## Command line\n\n```sh\n'
            'gluon-fcn [--debug] train --lr LR\n    [--epochs N]\n```\n')
    gone = missing(text)
    assert 'train --wd' in gone and 'train --lr' not in gone
    assert 'train --epochs' not in gone and 'predict' in gone


MAKEFILE = os.path.join(os.path.dirname(__file__), '..', 'Makefile')
NUMBERS = {'one': 1, 'two': 2, 'three': 3, 'four': 4, 'five': 5}


def readme():
    with open(README) as f:
        return f.read()


def words(text):
    """`text` as one line: no comment marks, line continuations or runs
    of spaces."""
    return ' '.join(text.replace('#', ' ').replace('\\', ' ').split())


def test_readme_gives_make_demo_s_own_train_command():
    with open(MAKEFILE) as f:
        makefile = f.read()
    flags = re.search(r'^DEMO_FLAGS := (.*?[^\\])$', makefile,
                      flags=re.M | re.S).group(1)
    run = re.search(r'^DEMO_RUN := (\S+)', makefile, flags=re.M).group(1)
    block = re.search(r'^make demo   # = (gluon-fcn train .*?)^```',
                      readme(), flags=re.M | re.S).group(1)
    assert f'gluon-fcn train {words(flags)} --out {run} --overwrite' in \
        words(block)


def test_the_demo_s_classes_are_the_synthetic_data_s():
    from gluon_fcn.core.synthetic import DEFAULT_CLASSES
    from gluon_fcn.d2l import VOC_CLASSES
    count, names = re.search(r'drawings of (\w+) classes \(([^)]*)\)',
                             readme()).groups()
    assert names == ', '.join(VOC_CLASSES[c] for c in DEFAULT_CLASSES)
    assert NUMBERS[count] == len(DEFAULT_CLASSES)


def test_the_demo_folder_holds_what_readme_says_under_150_mb(tmp_path):
    """Two checkpoints of the demo's net (the default --keep-checkpoints)
    and figures: the README's total, under the 150 MB of issue 24."""
    from gluon_fcn.app.config import TrainConfig
    from gluon_fcn.core.checkpoint import save_params
    from gluon_fcn.core.model import build_fcn
    from gluon_fcn.d2l import VOC_CLASSES
    text = words(readme())
    total, count, each = re.search(r'about (\d+) MB in all, (\w+) '
                                   r'checkpoints of (\d+) MB', text).groups()
    assert f'the last {count} epochs\' `checkpoints/`' in text
    assert NUMBERS[count] == TrainConfig().keep_checkpoints
    path = str(tmp_path / 'demo.params')
    save_params(build_fcn(len(VOC_CLASSES)), path)  # the demo's net
    assert round(os.path.getsize(path) / 1e6) == int(each)
    assert NUMBERS[count] * int(each) <= int(total) < 150


def test_a_run_stopped_before_its_first_checkpoint_is_as_readme_says(
        synth_voc, tmp_path, monkeypatch):
    """Stopped while the data is checked: no folder; stopped after, before
    the first checkpoint: the files the README names, and no others."""
    from gluon_fcn.app import fit
    from gluon_fcn.app.cli import main
    text = words(readme())
    assert 'stopped while its data is made or checked' in text and \
        'has no folder yet' in text
    kept = re.search(r'before its first checkpoint, its folder keeps only '
                     r'(.*?)\. ', text).group(1)
    kept = {name.rstrip('/') for name in re.findall(r'`([^`]+)`', kept)}

    def stop(*args, **kwargs):
        raise KeyboardInterrupt
    out = tmp_path / 'run'
    argv = ['train', '--data', synth_voc, '--out', str(out), '--crop',
            '64,64', '--batch-size', '2', '--epochs', '1']
    with monkeypatch.context() as m:
        m.setattr(fit, 'check_dataset', stop)
        assert main(argv) == 130
    assert not out.exists()
    monkeypatch.setattr(fit, 'build_net', stop)
    assert main(argv) == 130
    assert set(os.listdir(out)) == kept == {'config.json', 'checkpoints'}
    assert os.listdir(out / 'checkpoints') == []


def test_the_torchvision_offline_line_is_the_one_the_command_gives(
        tmp_path, monkeypatch):
    """'Pretrained models' quotes the error of torchvision's FCN offline
    as the command words it (the home folder written ~)."""
    from gluon_fcn.core import torchvision_fcn as tv

    def offline(*args, **kwargs):
        raise OSError('network unreachable')
    monkeypatch.setattr(tv.urllib.request, 'urlopen', offline)
    monkeypatch.setenv('HOME', str(tmp_path))
    for name in ('TORCH_HOME', 'XDG_CACHE_HOME'):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(FCNError) as e:
        tv.hub_file('fcn_resnet101')
    said = str(e.value).replace(str(tmp_path), '~')
    assert f'`{said}`' in words(readme())
    assert not (tmp_path / '.cache').exists()
