"""Runwatch's monitoring API: a Falcon WSGI app served by gunicorn (``runwatch api``).

Imports only ``runwatch`` (plus Falcon, gunicorn and prometheus_client), never Dramatiq, the
workers or the bridge (docs/design.md §1). The app lives in ``api.app`` (``create_app``,
``get_app``); this package imports nothing eagerly, so that ``runwatch`` commands stay cheap
and gunicorn's config can prepare Prometheus multiprocess mode before the app is imported.
"""
