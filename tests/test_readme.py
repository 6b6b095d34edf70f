"""README.md's command-line synopsis lists every subcommand and flag that
`gluon-fcn` has (`build_parser()`)."""
import os
import re

from gluon_fcn.app.cli import build_parser, flags, subcommands

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
