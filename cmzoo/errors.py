"""One family of user-facing errors: the CLI prints their message on one line and exits non-zero."""


class CmzooError(Exception):
    """A failure the user can fix; the message names the thing, the allowed values and the fix."""


class ConfigError(CmzooError):
    """An invalid configuration field, preset or option."""


class BackboneError(CmzooError):
    """An unknown backbone, a failing plugin, or a capability the backbone lacks."""


class DataError(CmzooError):
    """A missing, unreadable or mis-shaped data set or image."""


class CheckpointError(CmzooError):
    """A missing, truncated or corrupt checkpoint or run directory."""


class WeightsError(CmzooError):
    """Pretrained weights (LPIPS, Inception) that cannot be found or fail their checksum."""


class TrainingError(CmzooError):
    """A training run that cannot go on (for example a non-finite loss)."""


class OutputError(CmzooError):
    """A destination that cannot be written: a directory, an unknown suffix, a read-only folder, a full disk."""


class TrainingInterrupted(TrainingError):
    """SIGINT/SIGTERM arrived: a checkpoint was written and the run can be resumed."""
