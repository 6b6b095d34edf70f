"""Numbers that make no sense refused in one line (issue 25): NaN and the
infinities anywhere, zero or negative values where a count, a size or a
rate must be positive. Each check names the value as its caller knows it
(an argument, a config field; the app passes its flag), raises an
`FCNError`, and returns the value when it is good.
"""
import math
import numbers

from ..errors import FCNError

# the seeds every generator the runs seed takes (NumPy's legacy one is
# the narrowest; its new one refuses negative seeds)
MAX_SEED = 2 ** 32 - 1


def is_integer(value):
    """An int or a NumPy integer, not a bool."""
    return isinstance(value, numbers.Integral) and \
        not isinstance(value, bool)


def shown(value):
    """`value` as an error shows it: numbers bare (nan, inf, 0), anything
    else quoted, so that '5' from a JSON file is told from 5."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return str(value)
    return repr(value)


def count(name, value, low=1):
    """`value`, an integer >= `low` (1: a positive count; 0: a count that
    may be none)."""
    if not (is_integer(value) and value >= low):
        what = {0: 'a non-negative integer', 1: 'a positive integer'}.get(
            low, f'an integer >= {low}')
        raise FCNError(f'{name} must be {what}, got {shown(value)}')
    return value


def real(name, value, positive=True):
    """`value`, a finite number > 0 (or >= 0 where not `positive`)."""
    if not (isinstance(value, numbers.Real) and
            not isinstance(value, bool) and math.isfinite(value) and
            (value > 0 if positive else value >= 0)):
        what = 'positive' if positive else 'non-negative'
        raise FCNError(f'{name} must be a {what} finite number, got '
                       f'{shown(value)}')
    return value


def seed(name, value):
    """`value`, an integer from 0 to `MAX_SEED`."""
    if not (is_integer(value) and 0 <= value <= MAX_SEED):
        raise FCNError(f'{name} must be an integer from 0 to {MAX_SEED}, '
                       f'got {shown(value)}')
    return value
