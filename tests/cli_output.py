"""What the CLI prints, as tests of several modules read it.

`fails` runs a command that must fail as a user's mistake: exit 2 and
one line on stderr, no traceback.

The line the CLI may print on stderr beside an error: the note that a
run was trained on synthetic data (`app.trained_on.synthetic_note`,
checked in test_cli). Tests that read an error's one line leave it out
with `without_synthetic_note`. `compare` reports one row for each of the
DIFFERENCES between the chapters (README, "Comparing")."""
import re

from gluon_fcn.app.cli import main

SYNTHETIC_NOTE = 'was trained on synthetic data'
ERROR = 'gluon-fcn: error: '


def without_synthetic_note(lines):
    return [line for line in lines if SYNTHETIC_NOTE not in line]


DIFFERENCES = {'backbone', 'loss reduction', 'learning rate',
               'weight decay placement', 'BatchNorm momentum',
               '1x1 conv initialisation', 'input normalisation',
               'transposed conv initialisation', 'optimiser precision',
               'arithmetic'}


def one_line(err):
    """The lines of stderr besides progress bars and the note that a run
    was trained on synthetic data (test_cli checks that one)."""
    return without_synthetic_note(
        [line.strip() for line in re.split('[\r\n]', err)
         if line.strip() and not re.match(r'[\w /]+:\s+\d+%', line)])


def fails(args, capsys):
    """Run the CLI; it must exit 2 with one line on stderr besides the
    progress bars (no traceback): return its message."""
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = one_line(err)
    assert len(lines) == 1 and lines[0].startswith(ERROR), err
    return lines[0][len(ERROR):]
