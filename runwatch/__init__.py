"""Runwatch core: the run ledger, its lifecycle rules and its settings.

This package knows no Dramatiq and no Falcon (see docs/design.md §1); the execution side lives in
``workers/`` and ``bridge/``, the HTTP side in ``api/``.
"""

__version__ = "0.1.0"
