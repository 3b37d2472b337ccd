"""The one error the sandbox raises: a line that says what is wrong and how to fix it."""


class SandboxError(Exception):
    """A condition the operator must fix; the CLI prints it as one line and exits 2."""
