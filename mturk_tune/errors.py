"""Errors a user can act on.

Every exception here is shown by the CLI as one line (no traceback) and exits with code 2.
Library code raises them with a message that names the file, key or line and says the fix.
"""


class MturkTuneError(Exception):
    """Base class for errors caused by input, configuration or state the user can fix."""


class ConfigError(MturkTuneError):
    """A config file or option has a wrong key, type or value."""


class InputFileError(MturkTuneError):
    """A prompts, answers or scores file is missing or malformed."""


class ModelNotFound(MturkTuneError):
    """A model name or path cannot be loaded."""


class WorkspaceError(MturkTuneError):
    """The workspace is missing or its state does not allow the command."""


class SafetyError(MturkTuneError):
    """Refused because it could spend money or publish by accident (production without --production, over budget)."""


class AnswerParseError(MturkTuneError):
    """A worker's answer document is malformed or out of range. The raw answer is kept regardless."""
