"""What the CLI prints, as tests of several modules read it.

The line the CLI may print on stderr beside an error: the note that a
run was trained on synthetic data (`app.trained_on.synthetic_note`,
checked in test_cli). Tests that read an error's one line leave it out
with `without_synthetic_note`. `compare` reports one row for each of the
DIFFERENCES between the chapters (README, "Comparing")."""
SYNTHETIC_NOTE = 'was trained on synthetic data'


def without_synthetic_note(lines):
    return [line for line in lines if SYNTHETIC_NOTE not in line]


DIFFERENCES = {'backbone', 'loss reduction', 'learning rate',
               'weight decay placement', 'BatchNorm momentum',
               '1x1 conv initialisation', 'input normalisation',
               'transposed conv initialisation', 'optimiser precision',
               'arithmetic'}
