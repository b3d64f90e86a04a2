"""gpte's exceptions. Bad arguments raise the built-in TypeError/ValueError with a message that names the
problem and the allowed values; these classes cover what the built-ins do not say well."""


class GpteError(Exception):
    """Base class of gpte's own exceptions."""


class ModelLoadError(GpteError, OSError):
    """A model could not be found, downloaded or read (missing folder, corrupt files, no network)."""


class BackendUnavailableError(GpteError, RuntimeError):
    """An inference backend cannot run here (a missing extra, or hardware without the instructions it needs);
    the message names what to install or the backend to use instead."""
