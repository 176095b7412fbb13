"""Errors whose message is meant for the user (the app and the CLI show it instead of a traceback)."""


class FaceLabError(Exception):
    """A problem the user can act on; `str(err)` is a complete, plain-language message."""


class BadInputError(FaceLabError):
    """An input file or value that cannot be used (corrupt image, broken CSV, unsafe zip, ...)."""
