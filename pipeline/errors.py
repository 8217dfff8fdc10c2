"""Expected failures: each carries a one-line message that names the file or config key at fault."""


class PipelineError(Exception):
    """A failure caused by input or environment, reported to the user as one line."""
