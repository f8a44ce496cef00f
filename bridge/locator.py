"""Where is a run's message, and is its worker alive? The healer's broker evidence, from Redis."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis
from dramatiq.common import dq_name

from runwatch import wire
from runwatch.settings import DEFAULT_HEARTBEAT_TIMEOUT_MS
from runwatch.verdicts import Observation

from . import replies
from .keys import Keys

#: Past this many unapplied stream entries the ledger is lagging: the healer waits altogether.
MAX_INSPECTED_ENTRIES = 1000
#: Dead workers whose in-flight sets a pass looks into (Dramatiq's maintenance forgets them eventually).
MAX_DEAD_WORKERS = 100


#: Only a message still waiting in the queue list is moved: one a worker holds is left alone.
_DEAD_LETTER_IF_QUEUED = """
if redis.call("lrem", KEYS[1], 0, ARGV[1]) == 0 then return 0 end
local payload = redis.call("hget", KEYS[2], ARGV[1])
redis.call("hdel", KEYS[2], ARGV[1])
if payload then
    redis.call("zadd", KEYS[3], ARGV[2], ARGV[1])
    redis.call("hset", KEYS[4], ARGV[1], payload)
end
return 1
"""


#: Only if the (dead) worker still holds it: a concurrent ack or requeue wins.
_REQUEUE_IN_FLIGHT = """
if redis.call("srem", KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call("hexists", KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call("rpush", KEYS[3], ARGV[1])
return 1
"""


class RedisLocator:
    """Answers ``runwatch.healer.Locator`` with a few pipelined round trips per pass, not per run."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        event_stream: str,
        heartbeat_timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS,
    ) -> None:
        self._client = client
        self._keys = keys
        self._stream = event_stream
        self._heartbeat_timeout_ms = heartbeat_timeout_ms
        self._dead_letter = client.register_script(_DEAD_LETTER_IF_QUEUED)
        self._requeue = client.register_script(_REQUEUE_IN_FLIGHT)

    def dead_letter_if_queued(self, queue: str, redis_message_id: str) -> str | None:
        """Atomically move a message waiting in ``queue`` to its dead letters (as a nack would)."""
        keys = [
            self._keys.queue(queue),
            self._keys.messages(queue),
            self._keys.dead_letters(queue),
            self._keys.dead_letter_messages(queue),
        ]
        moved = self._dead_letter(keys=keys, args=[redis_message_id, int(time.time() * 1000)])
        return self._keys.dead_letters(queue) if moved else None

    def requeue_in_flight(self, queue: str, worker_id: str, redis_message_id: str) -> bool:
        """Give a dead worker's in-flight message back to its queue, as Dramatiq's own maintenance does."""
        keys = [self._keys.acks(worker_id, queue), self._keys.messages(queue), self._keys.queue(queue)]
        return bool(self._requeue(keys=keys, args=[redis_message_id]))

    def unapplied_message_ids(self, *, max_entries: int = MAX_INSPECTED_ENTRIES) -> set[str] | None:
        """Messages with events in the stream (entries are deleted once applied); None past ``max_entries``.

        Under traffic the stream is never empty, so "pause while anything is unapplied" would
        never heal; only runs whose own events are in flight need to wait.
        """
        entries = replies.stream_entries(self._client.xrange(self._stream, count=max_entries + 1))
        if len(entries) > max_entries:
            return None
        ids: set[str] = set()
        for _, fields in entries:
            try:
                ids.update(event.get("message_id") for event in wire.loads(fields[b"e"]))
            except (KeyError, ValueError, TypeError, AttributeError):
                continue  # the drainer rejects it with its reason
        return ids

    def _dead_holders(
        self, runs: Sequence[tuple[dict[str, Any], str]], now_ms: float
    ) -> dict[int, tuple[str, float, str]]:
        """Runs whose message is in the in-flight set of a worker that stopped heartbeating.

        ``runs`` pairs each run with the queue whose in-flight sets to look in (its queue, or its
        delay queue ``<q>.DQ``); returns run id -> (worker, heartbeat age, that queue).
        """
        if not runs:
            return {}
        # PERF: newest dead workers first (Dramatiq forgets dead heartbeats only now and then), and
        # one SMEMBERS per (worker, queue): in-flight sets are bounded by the prefetch.
        dead = replies.scored_members(self._client.zrevrangebyscore(
            self._keys.heartbeats(), now_ms - self._heartbeat_timeout_ms, "-inf", start=0, num=MAX_DEAD_WORKERS,
            withscores=True,
        ))  # fmt: skip
        if not dead:
            return {}
        pairs = [(worker.decode(), beat, queue) for worker, beat in dead for queue in sorted({q for _, q in runs})]
        with self._client.pipeline(transaction=False) as pipe:
            for worker, _, queue in pairs:
                pipe.smembers(self._keys.acks(worker, queue))
            held_sets = pipe.execute()
        holder_of: dict[tuple[str, bytes], tuple[str, float, str]] = {}
        for (worker, beat, queue), members in zip(pairs, held_sets, strict=True):
            for member in members:
                holder_of.setdefault((queue, member), (worker, round((now_ms - beat) / 1000, 3), queue))
        return {
            run["id"]: holder_of[(queue, run["redis_message_id"].encode())]
            for run, queue in runs
            if (queue, run["redis_message_id"].encode()) in holder_of
        }

    def observe(self, runs: Sequence[dict[str, Any]]) -> dict[int, Observation]:
        located = [r for r in runs if r.get("redis_message_id")]
        workers = sorted({r["worker_id"] for r in runs if r["status"] == "running" and r.get("worker_id")})
        with self._client.pipeline(transaction=False) as pipe:
            for run in located:
                pipe.hexists(self._keys.messages(run["queue_name"]), run["redis_message_id"])
                pipe.hexists(self._keys.delay_messages(run["queue_name"]), run["redis_message_id"])
                pipe.zscore(self._keys.dead_letters(run["queue_name"]), run["redis_message_id"])  # nack time, ms
                # NOTE: <queue>.msgs holds pending *and* in-flight messages; the holder's ack set tells which.
                if run["status"] == "running" and run.get("worker_id"):
                    pipe.sismember(self._keys.acks(run["worker_id"], run["queue_name"]), run["redis_message_id"])
            for worker in workers:
                pipe.zscore(self._keys.heartbeats(), worker)
            replies = pipe.execute()
        now_ms = time.time() * 1000
        found, dead_at = {}, {}
        replies_iter = iter(replies)
        for run in located:
            in_msgs, in_delay, dead = next(replies_iter), next(replies_iter), next(replies_iter)
            dead_at[run["id"]] = dead
            held = next(replies_iter) if run["status"] == "running" and run.get("worker_id") else False
            found[run["id"]] = (
                ("in_flight" if held else "queue")
                if in_msgs
                else "delay_queue"
                if in_delay
                else "dead_letters"
                if dead
                else None
            )
        beats = dict(zip(workers, replies_iter, strict=True))
        # NOTE: a message in <queue>.msgs that its recorded worker does not hold may sit in the
        # prefetch of a worker that died (SIGKILL, OOM) before starting it: Dramatiq gives it back
        # only when a random maintenance pass happens to run, which at low traffic may be never.
        # NOTE: the same holds for the delay queue: its consumer prefetches delayed messages (and
        # retries) until their eta, so a dead worker can hold those too.
        holders = self._dead_holders(
            [(r, r["queue_name"]) for r in located if found[r["id"]] == "queue"]
            + [(r, dq_name(r["queue_name"])) for r in located if found[r["id"]] == "delay_queue"],
            now_ms,
        )
        for run_id in holders:
            found[run_id] = "in_flight"
        observations = {}
        for run in runs:
            queue = run["queue_name"]
            beat = beats.get(run.get("worker_id"))
            age = None if beat is None else round((now_ms - beat) / 1000, 3)
            alive = (
                None if run["status"] != "running" else (age is not None and age * 1000 < self._heartbeat_timeout_ms)
            )
            holder = holder_queue = None
            if run["id"] in holders:
                holder, age, holder_queue = holders[run["id"]]
                alive = False
            if run["id"] in found:
                looked_in: tuple[str, ...] = (
                    self._keys.messages(queue),
                    self._keys.delay_messages(queue),
                    self._keys.dead_letter_messages(queue),
                )
                if holder or run.get("worker_id"):
                    looked_in += (self._keys.acks(holder or run["worker_id"], holder_queue or queue),)
                observations[run["id"]] = Observation(
                    checked=True,
                    found_in=found[run["id"]],
                    looked_in=looked_in,
                    worker_alive=alive,
                    heartbeat_age_seconds=age,
                    holder=holder,
                    holder_queue=holder_queue,
                    dead_letter_key=self._keys.dead_letters(queue) if found[run["id"]] == "dead_letters" else None,
                    dead_letter_age_seconds=(
                        round((now_ms - dead_at[run["id"]]) / 1000, 3) if found[run["id"]] == "dead_letters" else None
                    ),
                )
            else:
                observations[run["id"]] = Observation(
                    checked=False,
                    worker_alive=alive,
                    heartbeat_age_seconds=age,
                    detail="no Redis message id recorded for this run: the broker could not be asked",
                )
        return observations
