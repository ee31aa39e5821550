"""Per-tomogram claims between real processes: races, kill -9 recovery, stale breaking, heartbeat."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time

import pytest
from bilayer.batch import claims
from bilayer.batch.claims import ClaimState, claim_key, claim_path, claim_state, read_claim, try_claim
from bilayer.errors import ConfigError, OutputError

CTX = mp.get_context("fork")
HB, STALE = 0.1, 1.0  # small heartbeat / stale_after for the tests


# ---- helpers run in child processes ------------------------------------------------------------

def _race_keys(run, keys, barrier, out):
    barrier.wait()
    got = [k for k in keys if try_claim(run, k, heartbeat=HB, stale_after=STALE) is not None]
    out.put((os.getpid(), got))


def _hold(run, key, host, ready):
    claims._HOST = host  # play a node of its own when asked
    claim = try_claim(run, key, heartbeat=HB, stale_after=STALE)
    with claim:
        ready.set()
        time.sleep(60)


def _break_rounds(run, rounds, barrier, out):
    claims._HOST = f"worker-{os.getpid()}"  # no same-host pid check: only the old mtime makes them stale
    for r in range(rounds):
        barrier.wait()
        c = try_claim(run, f"t{r}", heartbeat=HB, stale_after=STALE)
        out.put((r, os.getpid(), c.token if c else None))


def _holder(tmp_path, key, host="node-b"):
    ready = CTX.Event()
    p = CTX.Process(target=_hold, args=(tmp_path, key, host, ready), daemon=True)
    p.start()
    assert ready.wait(10)
    return p


def _kill(p):
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)


def _fake_claim(run, key, *, host, pid, age):
    """A claim left by a process elsewhere, last refreshed ``age`` seconds ago."""
    path = claim_path(run, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "started": time.time() - age, "token": f"tok-{key}"}))
    t = time.time() - age
    os.utime(path, (t, t))
    return path


# ---- tests -------------------------------------------------------------------------------------

def test_claim_key_is_safe_and_unique(tmp_path):
    assert claim_key("TS_01.mrc") == "TS_01.mrc"  # safe names are their own key
    names = ["a/b", "a_b", "a:b", "a b", "../x", ".x", "x" * 101, "x" * 100, "é"]
    keys = [claim_key(n) for n in names]
    assert len(set(keys)) == len(names)
    for k in keys:
        assert "/" not in k and not k.startswith(".") and len(k) <= 100
    assert claim_key("a/b") == claim_key("a/b")
    from bilayer.batch.records import tomogram_key  # the run's keys are already safe: claims use them as is
    k = tomogram_key(tmp_path / "odd name:1.mrc")
    assert claim_key(k) == k
    with pytest.raises(ValueError):
        claim_key("")


def test_two_processes_racing_for_20_keys_get_disjoint_sets_covering_all(tmp_path):
    keys = [f"tomo_{i:02d}" for i in range(20)]
    barrier, out = CTX.Barrier(2), CTX.Queue()
    procs = [CTX.Process(target=_race_keys, args=(tmp_path, keys, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=20) for _ in procs)
    for p in procs:
        p.join(10)
    a, b = (set(v) for v in results.values())
    assert not a & b
    assert a | b == set(keys)
    # each claim file names its winner (the holders exited without releasing)
    for pid, got in results.items():
        for k in got:
            assert read_claim(tmp_path, k).pid == pid


def test_live_claim_is_refused_and_killed_same_host_claim_recovered_at_once(tmp_path):
    p = _holder(tmp_path, "TS_1", claims._HOST)
    try:
        assert try_claim(tmp_path, "TS_1", heartbeat=HB, stale_after=STALE) is None
        assert claim_state(tmp_path, "TS_1", STALE) is ClaimState.HELD
        info = read_claim(tmp_path, "TS_1")
        assert (info.host, info.pid) == (claims._HOST, p.pid)
    finally:
        _kill(p)
    # dead pid on this host: stale at once, though its mtime is fresh and stale_after is long
    assert claim_state(tmp_path, "TS_1", 300.0) is ClaimState.STALE
    with try_claim(tmp_path, "TS_1", heartbeat=HB, stale_after=300.0) as c:
        assert c.held and read_claim(tmp_path, "TS_1").pid == os.getpid()
    assert claim_state(tmp_path, "TS_1") is ClaimState.FREE
    assert os.listdir(tmp_path / "claims") == []  # no tombstones left


def test_killed_claim_of_another_node_is_recovered_after_stale_after(tmp_path):
    p = _holder(tmp_path, "TS_2", "node-b")
    _kill(p)
    # another host: its pid means nothing here, so the claim is live until its mtime is old
    assert try_claim(tmp_path, "TS_2", heartbeat=HB, stale_after=STALE) is None
    time.sleep(STALE + 0.3)
    assert claim_state(tmp_path, "TS_2", STALE) is ClaimState.STALE
    c = try_claim(tmp_path, "TS_2", heartbeat=HB, stale_after=STALE)
    assert c is not None and c.held
    assert c.release() and claim_state(tmp_path, "TS_2") is ClaimState.FREE


def test_fresh_claim_of_another_node_is_held_old_one_is_stale(tmp_path):
    _fake_claim(tmp_path, "a", host="node-c", pid=12345, age=0.0)
    _fake_claim(tmp_path, "b", host="node-c", pid=12345, age=10.0)
    assert claim_state(tmp_path, "a", 5.0) is ClaimState.HELD
    assert claim_state(tmp_path, "b", 5.0) is ClaimState.STALE
    assert try_claim(tmp_path, "a", heartbeat=1.0, stale_after=5.0) is None
    c = try_claim(tmp_path, "b", heartbeat=1.0, stale_after=5.0)
    assert c is not None and read_claim(tmp_path, "b").token == c.token
    c.release()


def test_processes_racing_to_break_one_stale_claim_exactly_one_wins(tmp_path):
    rounds, n = 40, 4
    for r in range(rounds):
        _fake_claim(tmp_path, f"t{r}", host="gone-node", pid=1, age=STALE * 5)
    barrier, out = CTX.Barrier(n), CTX.Queue()
    procs = [CTX.Process(target=_break_rounds, args=(tmp_path, rounds, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [out.get(timeout=20) for _ in range(rounds * n)]
    for p in procs:
        p.join(10)
    for r in range(rounds):
        winners = [tok for rr, _, tok in results if rr == r and tok is not None]
        assert len(winners) == 1, f"round {r}: {len(winners)} winners"
        assert read_claim(tmp_path, f"t{r}").token == winners[0]
    assert sorted(os.listdir(tmp_path / "claims")) == sorted(f"t{r}.claim" for r in range(rounds))


def test_breaking_checks_the_claim_is_still_the_one_judged_stale(tmp_path):
    # the race the tombstone guards against, step by step: B judged the old claim stale, A broke it
    # and claimed; B's late break must put A's claim back, not remove it
    old = _fake_claim(tmp_path, "w", host="gone-node", pid=1, age=STALE * 5)
    judged = claims._snapshot(old)
    a = try_claim(tmp_path, "w", heartbeat=HB, stale_after=STALE)
    assert a is not None
    assert claims._take_away(old, judged.identity()) is False
    assert a.held and read_claim(tmp_path, "w").token == a.token
    assert os.listdir(tmp_path / "claims") == ["w.claim"]
    assert claims._break(old, judged, STALE) is False  # the same through the breaking marker
    assert a.held and os.listdir(tmp_path / "claims") == ["w.claim"]
    a.release()


def test_release_by_a_non_holder_does_nothing(tmp_path):
    mine = try_claim(tmp_path, "x", heartbeat=HB, stale_after=STALE)
    impostor = claims.Claim(mine.path, "not-the-token", heartbeat=HB)
    assert impostor.release() is False
    assert read_claim(tmp_path, "x").token == mine.token
    # a claim broken and taken by another: the old holder's release leaves the new claim alone
    os.utime(mine.path, (time.time() - 10, time.time() - 10))
    other = try_claim(tmp_path, "x", heartbeat=HB, stale_after=STALE)
    assert other is not None and not mine.held
    assert mine.release() is False
    assert read_claim(tmp_path, "x").token == other.token
    assert other.release() is True and claim_state(tmp_path, "x") is ClaimState.FREE


def test_heartbeat_keeps_a_long_claim_fresh_and_exit_releases(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "_HOST", "this-node")  # judge by mtime only (the holder is this process)
    idle = try_claim(tmp_path, "idle", heartbeat=HB, stale_after=STALE)  # never entered: no heartbeat
    with pytest.raises(KeyboardInterrupt), try_claim(tmp_path, "busy", heartbeat=HB, stale_after=STALE) as busy:
        time.sleep(STALE * 1.5)
        assert claim_state(tmp_path, "busy", STALE) is ClaimState.HELD
        assert read_claim(tmp_path, "busy").age < STALE
        assert claim_state(tmp_path, "idle", STALE) is ClaimState.STALE
        assert busy.held
        raise KeyboardInterrupt
    assert claim_state(tmp_path, "busy", STALE) is ClaimState.FREE  # released on the way out
    idle.release()


def test_heartbeat_notices_a_broken_claim(tmp_path):
    with try_claim(tmp_path, "y", heartbeat=HB, stale_after=STALE) as c:
        os.replace(_fake_claim(tmp_path, "z", host="node-d", pid=7, age=0), c.path)  # someone else's now
        deadline = time.time() + 5
        while c._thread.is_alive() and time.time() < deadline:
            time.sleep(HB / 2)
        assert not c.held and not c._thread.is_alive()
    assert read_claim(tmp_path, "y").token == "tok-z"  # exit did not remove the other's claim


def test_unwritable_claims_folder_and_bad_times_are_one_line_errors(tmp_path):
    run = tmp_path / "run"
    run.write_text("a file, not a folder")
    with pytest.raises(OutputError, match="claims folder .*run/claims.*--out"):
        try_claim(run, "a")
    with pytest.raises(ConfigError, match="stale_after"):
        try_claim(tmp_path, "a", heartbeat=30.0, stale_after=40.0)
    with pytest.raises(ConfigError, match="heartbeat"):
        try_claim(tmp_path, "a", heartbeat=0.0)
