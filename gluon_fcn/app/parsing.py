"""argparse for `gluon-fcn`: flags taken only as written, mistakes in one
line.

argparse takes any unambiguous prefix of a flag by default, so `--epoch 0`
silently meant `--epochs 0`; here a flag must be written whole, and one
that the command does not have is named with the closest one it has
(difflib). argparse also prints its usage block above an error; here
every error is the README's one line, `gluon-fcn: error: ...`, exit 2.
"""
import argparse
import difflib

from ..errors import FCNError


class ParseError(FCNError):
    """A command line that argparse cannot read."""


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` (and its subcommands' parsers) that takes whole
    flags only and raises `ParseError` instead of printing usage and
    exiting."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault('allow_abbrev', False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise ParseError(message)

    def parse_args(self, args=None, namespace=None):
        args, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(unknown_flags(extras, self.known_flags(args)))
        return args

    def known_flags(self, namespace):
        """The flags of this parser and of the subcommand `namespace`
        chose."""
        found = [s for a in self._actions for s in a.option_strings]
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(namespace, action.dest,
                                                    None))
                if chosen is not None:
                    found += chosen.known_flags(namespace)
        return found


def unknown_flags(extras, flags):
    """'unknown flag --epcohs (did you mean --epochs?)' for the arguments
    argparse left over, each with the closest of `flags`."""
    named = []
    for arg in extras:
        if not arg.startswith('-') or arg == '-':
            continue
        name = arg.split('=', 1)[0]
        close = difflib.get_close_matches(name, flags, n=1)
        named.append(f'{name} (did you mean {close[0]}?)' if close
                     else name)
    if not named:
        return f'unrecognized arguments: {" ".join(extras)}'
    return f'unknown flag{"s" if len(named) > 1 else ""} ' + ', '.join(named)
