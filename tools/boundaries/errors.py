"""The error that stops a boundary check before it can judge anything."""


class CheckError(Exception):
    """A usage, configuration or git problem: the check cannot run, so it exits 2.

    The message says what is wrong and where, and how to fix it.
    """
