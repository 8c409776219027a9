"""Errors shared by the command line and the libraries."""


class UsageError(Exception):
    """Bad user input (a missing path, an empty dataset, a wrong value).

    The command line prints it as one line naming the problem and the value, and exits with code 2.
    """
