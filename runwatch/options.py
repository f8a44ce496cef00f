"""Names of the Dramatiq actor and message options Runwatch reads and writes, spelled once.

Plain strings, so the core stays free of Dramatiq: ``workers`` declares and reads them, ``bridge``
reads them from dead letters and sets ``RETRY_OF_OPTION`` on a requeued message.
"""

from __future__ import annotations

#: Message options, set at send time (``actor.send_with_options(runwatch_tenant_id=7)``).
TENANT_OPTION = "runwatch_tenant_id"
INITIATOR_OPTION = "runwatch_initiator"
RETRY_OF_OPTION = "runwatch_retry_of"  # the run a requeued message retries
#: Set by the recorder on a message whose enqueue it recorded; a fresh delivery must not carry it.
SEEN_OPTION = "runwatch_seen"

#: Actor options (``@dramatiq.actor(runwatch_type="billing.sync")``; declare actors after ``install``).
TRACK_OPTION = "runwatch_track"  # False: this actor is not recorded
TYPE_OPTION = "runwatch_type"  # operation type, default the actor name
LABEL_OPTION = "runwatch_label"  # human label of the type
QUEUED_STALE_SECONDS_OPTION = "runwatch_queued_stale_seconds"
RUNNING_STALE_SECONDS_OPTION = "runwatch_running_stale_seconds"
SUMMARY_KEYS_OPTION = "runwatch_summary_keys"  # summary keys allowed beyond the default catalogue
STORE_ARGS_OPTION = "runwatch_store_args"  # True: keep the job arguments (they may hold secrets)
ACTOR_OPTIONS = frozenset(
    {
        TRACK_OPTION,
        TYPE_OPTION,
        LABEL_OPTION,
        QUEUED_STALE_SECONDS_OPTION,
        RUNNING_STALE_SECONDS_OPTION,
        SUMMARY_KEYS_OPTION,
        STORE_ARGS_OPTION,
    }
)
