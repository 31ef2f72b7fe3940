"""ApproximateTimeSync: matching rules and drop accounting. No DDS."""

from __future__ import annotations

from ros3d_agent.ros.time_sync import ApproximateTimeSync

MS = 1_000_000


def _sync(n=3, slop_ms=10, queue=5, jumps=None):
    out = []
    s = ApproximateTimeSync([f"s{i}" for i in range(n)], slop_ms * MS, queue, lambda t, msgs: out.append((t, msgs)),
                            on_time_jump=(lambda a, b: jumps.append((a, b))) if jumps is not None else None,
                            time_jump_ns=1000 * MS)
    return s, out


def test_exact_and_jittered_stamps_match_in_any_arrival_order():
    s, out = _sync()
    for k in range(5):
        t = 1000 * MS + k * 33 * MS
        order = [(2, t), (0, t + 2 * MS), (1, t - 3 * MS)] if k % 2 else [(0, t), (1, t + 1 * MS), (2, t)]
        for i, stamp in order:
            s.add(i, stamp, f"m{i}-{k}")
    assert [msgs for _, msgs in out] == [[f"m0-{k}", f"m1-{k}", f"m2-{k}"] for k in range(5)]
    assert s.matched == 5 and not s.drops


def test_pivot_waits_until_partners_cannot_get_closer():
    s, out = _sync(n=2, slop_ms=20)
    s.add(0, 100 * MS, "c")
    s.add(1, 85 * MS, "d-early")  # within slop, but a closer one may still come
    assert not out
    s.add(1, 99 * MS, "d-close")
    assert not out  # still nothing at/after 100 ms
    s.add(1, 133 * MS, "d-next")
    assert out == [(100 * MS, ["c", "d-close"])]
    assert s.drops == {"s1:superseded": 1}


def test_lost_partner_drops_the_pivot_as_unmatched():
    s, out = _sync(n=2, slop_ms=5)
    s.add(0, 100 * MS, "c0")
    s.add(0, 133 * MS, "c1")
    s.add(1, 133 * MS, "d1")  # d0 was lost
    assert out == [(133 * MS, ["c1", "d1"])]
    assert s.drops == {"s0:unmatched": 1}


def test_late_and_overflowing_messages_are_counted():
    s, out = _sync(n=2, queue=3)
    for k in range(5):  # depth stream silent: colour queue overflows
        s.add(0, (100 + k) * MS, k)
    assert s.drops["s0:unmatched"] == 2 and s.pending() == [3, 0]
    s.add(1, 104 * MS, "d")
    assert out[-1][1] == [4, "d"]
    s.add(0, 90 * MS, "old")  # older than the last match
    assert s.drops["s0:late"] == 1
    for k in range(5):
        s.add(1, (200 + k) * MS, k)
    assert s.drops["s1:overflow"] == 2


def test_backward_jump_resets_queues_and_notifies():
    jumps: list = []
    s, out = _sync(n=2, jumps=jumps)
    s.add(0, 5000 * MS, "a")
    s.add(1, 5000 * MS, "b")
    s.add(0, 5033 * MS, "pending")
    s.add(0, 1000 * MS, "stale")  # one old frame is an outlier, not a jump
    assert s.drops["s0:late"] == 1 and not jumps
    s.add(0, 5066 * MS, "current")
    for k in range(3):  # bag loop: the older timeline persists
        s.add(0, (10 + 33 * k) * MS, f"restart{k}")
    assert jumps == [(5066 * MS, 76 * MS)] and s.time_jumps == 1
    assert s.drops["s0:time_jump"] == 2 and s.drops["s0:late"] == 3
    s.add(1, 76 * MS, "d")
    assert out[-1] == (76 * MS, ["restart2", "d"])


def test_four_streams():
    s, out = _sync(n=4)
    for i in range(4):
        s.add(i, 7 * MS, i)
    assert out == [(7 * MS, [0, 1, 2, 3])]
