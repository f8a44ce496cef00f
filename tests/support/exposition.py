"""Scraping a collector in-process, for tests of /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector


def scrape(collector: Collector) -> str:
    """The text exposition of ``collector`` alone, as Prometheus would fetch it."""
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def samples(body: str) -> dict[tuple[str, tuple], float]:
    """Every sample of ``body`` by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def family_blocks(body: str) -> dict[str, str]:
    """``body`` cut into its families, by name: each block is the family's HELP, TYPE and sample lines,
    byte for byte (a name that appears twice fails: a scrape must name each family once)."""
    blocks: dict[str, str] = {}
    name = ""
    for line in body.splitlines(keepends=True):
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in blocks, f"family {name} exposed twice"
            blocks[name] = ""
        blocks[name] += line
    return blocks
