"""Dramatiq option names are spelled once, in ``runwatch.options``; bridge and workers import them."""

import re
from pathlib import Path

from runwatch import options

ROOT = Path(__file__).resolve().parents[2]
NAMES = {value for name, value in vars(options).items() if name.endswith("_OPTION")}


def test_the_names_are_distinct_and_prefixed():
    assert len(NAMES) == len([n for n in vars(options) if n.endswith("_OPTION")]) == 11
    assert all(name.startswith("runwatch_") for name in NAMES)
    assert options.ACTOR_OPTIONS < NAMES


def test_bridge_and_the_recorders_metadata_never_retype_an_option_name():
    paths = [*ROOT.glob("bridge/**/*.py"), ROOT / "workers" / "meta.py"]
    retyped = {
        f"{path.relative_to(ROOT)}: {literal}"
        for path in paths
        for literal in re.findall(r"""["'](runwatch_[a-z_]+)["']""", path.read_text())
        if literal in NAMES
    }
    assert sorted(retyped) == []


def test_the_recorder_declares_the_shared_actor_options():
    from runwatch.workers import meta

    assert meta.ACTOR_OPTIONS is options.ACTOR_OPTIONS
    assert (meta.TENANT_OPTION, meta.INITIATOR_OPTION, meta.RETRY_OF_OPTION) == (
        "runwatch_tenant_id",
        "runwatch_initiator",
        "runwatch_retry_of",
    )
