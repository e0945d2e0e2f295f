"""The error that stops a boundary check before it can judge anything."""


class CheckError(Exception):
    """A usage, configuration or git problem that stops the check (exit 2).

    The message names what is wrong and where, and how to fix it.
    """
