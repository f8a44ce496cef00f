"""A Dramatiq app module with the demo actors, for ``dramatiq workers.sample_app`` (compose, docs).

Shows the whole integration a team needs: build the broker, install Runwatch, declare actors.
"""

import dramatiq

from .broker import redis_broker
from .demo import declare_actors

broker = redis_broker()
dramatiq.set_broker(broker)
actors = declare_actors(broker)
