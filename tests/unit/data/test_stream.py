"""The clip order of vmas.data.stream: every clip once per epoch over all readers, exact resume, no reads wasted."""

import numpy as np
import pytest
from itertools import islice

from vmas.data.stream import slot_plan, slot_stream, unit_pass, worker_share


def _units(sizes):
    """Units of ``sizes`` clips; clip ``(u, i)``; and a reader that records what it opened."""
    counts = np.array(sizes)
    opened = []

    def read(unit):
        opened.append(unit)
        return [(unit, i) for i in range(sizes[unit])]

    return counts, read, opened


@pytest.mark.parametrize("sizes", [[5, 3, 7, 2, 4, 6, 1], [9, 4], [1] * 11])
def test_two_ranks_and_two_workers_see_every_clip_once_per_epoch(sizes):
    counts, read, _ = _units(sizes)
    everything = sorted((u, i) for u, n in enumerate(sizes) for i in range(n))
    for epoch in range(3):
        seen = []
        for slot in range(4):  # rank r, worker w -> slot 2r + w
            plan = slot_plan(counts, 7, epoch, slot, 4)
            clips = [(u, i) for u in plan.units for i in range(sizes[u])]
            seen += clips[plan.offset::plan.stride]
            assert len(clips[plan.offset::plan.stride]) == plan.length
        assert sorted(seen) == everything
        lengths = [slot_plan(counts, 7, epoch, slot, 4).length for slot in range(4)]
        assert max(lengths) - min(lengths) <= max(sizes)  # shards go to the slot with the fewest clips


def test_split_by_unit_when_there_are_enough_units_else_by_clip():
    counts, _, _ = _units([3] * 8)
    plans = [slot_plan(counts, 0, 0, s, 4) for s in range(4)]
    assert all(p.stride == 1 and len(p.units) == 2 for p in plans)  # each shard read by one reader
    assert sorted(u for p in plans for u in p.units) == list(range(8))
    few = slot_plan(counts[:2], 0, 0, 1, 4)
    assert few.stride == 4 and few.offset == 1 and len(few.units) == 2


def test_a_stream_resumed_anywhere_is_the_tail_of_the_whole_one():
    counts, read, _ = _units([5, 3, 7, 2, 4, 6, 1])
    whole = list(islice(slot_stream(counts, read, 3, 1, 2, buffer=4), 60))  # several epochs
    for start in (0, 1, 3, 4, 9, 17, 31, 45):
        assert list(islice(slot_stream(counts, read, 3, 1, 2, buffer=4, start=start), 60 - start)) == whole[start:]


def test_the_shuffle_buffer_mixes_within_blocks_and_epochs_differ():
    counts, read, _ = _units([50])
    stream = list(islice(slot_stream(counts, read, 0, 0, 1, buffer=10), 100))
    first, second = stream[:50], stream[50:]
    assert sorted(first) == sorted(second) == [(0, i) for i in range(50)]
    assert first != second and first != sorted(first)
    assert all(sorted(first[b:b + 10]) == [(0, i) for i in range(b, b + 10)] for b in range(0, 50, 10))


def test_resuming_skips_whole_units_unopened():
    counts, read, opened = _units([10] * 6)
    plan = slot_plan(counts, 0, 0, 0, 1)
    list(islice(slot_stream(counts, read, 0, 0, 1, buffer=5, start=35), 1))
    assert opened == [plan.units[3]]  # clips 30-39: the fourth unit; the first three never opened


def test_a_failing_unit_goes_to_the_policy_and_the_stream_goes_on():
    counts = np.array([3, 3, 3])
    failures = []

    def read(unit):
        if unit == 1:
            yield (1, 0)
            raise OSError("truncated")
        yield from ((unit, i) for i in range(3))

    stream = slot_stream(counts, read, 0, 0, 1, buffer=100, on_error=lambda u, e: failures.append((u, str(e))))
    clips = list(islice(stream, 7))  # the first epoch gives 3 + 1 + 3
    assert failures == [(1, "truncated")] and len(set(clips)) == 7
    with pytest.raises(OSError, match="truncated"):
        list(islice(slot_stream(counts, read, 0, 0, 1, buffer=100), 9))


def test_too_few_clips_for_the_readers_is_a_clear_error():
    counts, read, _ = _units([1, 2])
    with pytest.raises(ValueError, match="3 clips cannot feed 4 readers"):
        next(slot_stream(counts, read, 0, 0, 4, buffer=2))


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("done", [0, 1, 2, 5])
def test_worker_roles_continue_the_round_robin_of_the_run_before(workers, done):
    total = 11
    # the uninterrupted loader: global batch k from worker k % workers, its (k // workers)-th
    origin = [(k % workers, k // workers) for k in range(done + total)]
    resumed = {}
    for w in range(workers):
        role, before, mine = worker_share(total, done, w, workers)
        resumed[w] = [(role, before + j) for j in range(mine)]
    loader = [resumed[k % workers][k // workers] for k in range(total)]  # the resumed loader's round robin
    assert loader == origin[done:]


def test_validation_pass_shares_every_clip_once():
    for sizes, workers in (([3, 4, 5], 2), ([6], 3)):
        counts, read, _ = _units(sizes)
        seen = [c for w in range(workers) for c in unit_pass(counts, read, w, workers)]
        assert sorted(seen) == sorted((u, i) for u, n in enumerate(sizes) for i in range(n))
