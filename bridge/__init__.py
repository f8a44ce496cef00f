"""Queue truth into run truth: the failure callback, the dead-letter adapter, the message locator.

Imports ``runwatch``, dramatiq and redis; never ``workers`` or ``api``.
"""
