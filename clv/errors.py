"""The exceptions clvx raises.

Core code raises these with a message that names the value, the rule and what to
do; only the command line turns them into an ``Error: ...`` line and an exit code
(``cli.py`` maps each class to its code).
"""

from __future__ import annotations


class ClvxError(Exception):
    """Base class for every error clvx reports to the user."""


class InputError(ClvxError):
    """The input (file, column, value or option) is malformed; the command line exits with 2."""


class ModelError(ClvxError):
    """A model cannot be fitted or used on this data; the command line exits with 1."""


class NotFittedError(ModelError, AttributeError):
    """An estimator's learned state was read before ``fit``.

    Also an AttributeError, as in scikit-learn, so ``hasattr(est, "params_")`` stays False.
    """
