"""The one exception type for problems a user can fix: bad input, config or checkpoint."""


class CharrnnError(Exception):
    """A user-facing error; the CLI prints it as one line `Error: ...` and exits 1."""
