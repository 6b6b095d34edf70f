"""The one error type users see, turned by the CLI into one line and exit 2."""


class FCNError(Exception):
    """A fault in what the user gave: a file, an image id or a flag.

    The message is one line and names the thing at fault.
    """
