"""Runwatch's execution side: the recording middleware and the job-author API.

broker = RedisBroker(url=...)    # or RabbitmqBroker(url=...)
workers.install(broker)          # the one line; before declaring actors
"""

from .broker import install, rabbitmq_broker, redis_broker
from .errors import InvalidSendOptions, NotInsideRun
from .middleware import Recorder
from .run import Run, current_run

__all__ = [
    "InvalidSendOptions",
    "NotInsideRun",
    "Recorder",
    "Run",
    "current_run",
    "install",
    "rabbitmq_broker",
    "redis_broker",
]
