"""The drainer child's entry point: ``python -m runwatch.workers.drain_process_main``.

A module of its own: ``-m runwatch.workers.drain_process`` would run that module a second time
as ``__main__`` (the package has imported it already), which Python warns about on stderr.
"""

from .drain_process import main

if __name__ == "__main__":
    main()
