"""The order training reads clips in: a function of ``(seed, position)``, for shards and files alike.

The data is a list of *units* read front to back: a shard (many clips) or, for per-clip files, one
clip. Readers are *slots*: ``world x workers`` of them, one per DataLoader worker of each rank.

- **Epoch e** orders the units by a permutation seeded by ``(seed, e)``. With at least as many units
  as slots, each unit in that order goes to the slot with the fewest clips so far (split by unit:
  each shard is read by one slot, and slots' epochs differ by at most one shard); with fewer, every slot reads every unit and keeps clips ``s, s + slots, ...`` of
  their concatenation (split by clip: small sets). Either way the slots together read each clip
  exactly once per epoch.
- **Shuffle buffer**: a slot's epoch is cut into blocks of ``buffer`` clips, each emitted in a
  permutation seeded by ``(seed, e, slot, block)``. Memory: one block of encoded clips.
- A slot's stream is its epochs one after another, without end; a rank takes exactly the batches
  its steps need, so every rank gets the same number of batches.

Everything is a function of positions, so a run resumed at step ``k`` starts each slot at the clip it
had reached: whole units before it are skipped unread (their clip counts come from the index), the
current unit is read without decoding up to the block, and the block is rebuilt. No state needs to go
in the checkpoint. Clips are decoded only when emitted, in the worker processes.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass
from itertools import islice
from typing import Callable, Iterable, Iterator

import numpy as np

log = logging.getLogger(__name__)

Reader = Callable[[int], Iterable]  # unit index -> its clips (encoded), in stored order


@dataclass(frozen=True)
class SlotPlan:
    """What one slot reads in one epoch: ``units`` in order, keeping every ``stride``-th clip of their
    concatenation from ``offset``; ``length`` clips in all."""

    units: tuple[int, ...]
    stride: int
    offset: int
    length: int


def slot_plan(counts: np.ndarray, seed: int, epoch: int, slot: int, slots: int) -> SlotPlan:
    """Slot ``slot`` of ``slots`` in ``epoch``, for units of ``counts`` clips each."""
    order = np.random.default_rng([seed, epoch]).permutation(len(counts))
    if len(counts) >= slots:
        # each unit in turn to the slot with the fewest clips so far (ties: the lowest slot), so the
        # slots' epochs differ by at most one unit's clips
        loads = [(0, s) for s in range(slots)]
        units = []
        for unit in order:
            load, owner = heapq.heappop(loads)
            heapq.heappush(loads, (load + int(counts[unit]), owner))
            if owner == slot:
                units.append(int(unit))
        return SlotPlan(tuple(units), 1, 0, int(counts[units].sum()))
    total = int(counts.sum())
    return SlotPlan(tuple(int(u) for u in order), slots, slot, len(range(slot, total, slots)))


def plan_clips(plan: SlotPlan, counts: np.ndarray, read: Reader, start: int = 0,
               on_error: Callable[[int, Exception], None] | None = None) -> Iterator:
    """The plan's clips from position ``start`` on (encoded, undecoded). Units wholly before it are
    not opened. ``on_error(unit, exc)``, when given, is told of a unit that fails and the stream goes
    on with the next one; without it the error propagates."""
    first = plan.offset + start * plan.stride  # index in the concatenation of the plan's units
    position = 0
    for unit in plan.units:
        n = int(counts[unit])
        if position + n <= first:
            position += n
            continue
        try:
            for i, clip in enumerate(read(unit)):
                g = position + i
                if g >= first and (g - plan.offset) % plan.stride == 0:
                    yield clip
        except Exception as exc:  # noqa: BLE001 - the policy decides, and names the unit
            if on_error is None:
                raise
            on_error(unit, exc)
        position += n


def slot_stream(counts: np.ndarray, read: Reader, seed: int, slot: int, slots: int, buffer: int, start: int = 0,
                on_error: Callable[[int, Exception], None] | None = None) -> Iterator:
    """Slot ``slot``'s endless stream of clips from position ``start`` (see the module docstring)."""
    if int(np.sum(counts)) < slots:
        raise ValueError(f"{int(np.sum(counts))} clips cannot feed {slots} readers (ranks x DataLoader workers); "
                         "use fewer workers (train.num_workers)")
    epoch = 0
    while True:  # find the epoch and the offset in it
        length = slot_plan(counts, seed, epoch, slot, slots).length
        if start < length:
            break
        start, epoch = start - length, epoch + 1
    while True:
        plan = slot_plan(counts, seed, epoch, slot, slots)
        block = start // buffer
        clips = plan_clips(plan, counts, read, block * buffer, on_error)
        skip = start % buffer
        while block * buffer < plan.length:
            chunk = list(islice(clips, min(buffer, plan.length - block * buffer)))
            for i in np.random.default_rng([seed, epoch, slot, block]).permutation(len(chunk))[skip:]:
                yield chunk[i]
            skip, block = 0, block + 1
        start, epoch = 0, epoch + 1


def worker_share(total_batches: int, done_batches: int, worker: int, workers: int) -> tuple[int, int]:
    """``(role, batches before, batches to give)`` of DataLoader worker ``worker`` of ``workers``.

    A DataLoader takes batch ``k`` from worker ``k mod workers``. A loader started after
    ``done_batches`` batches gives global batch ``done + k``; so worker ``w`` plays the role (the
    slot) of worker ``(w + done) mod workers`` of the uninterrupted run, which had already given
    ``ceil((done - role) / workers)`` batches. Returns ``(role, given before, to give now)``.
    """
    role = (worker + done_batches) % workers
    before = (done_batches - role + workers - 1) // workers
    return role, before, (total_batches - worker + workers - 1) // workers


def unit_pass(counts: np.ndarray, read: Reader, worker: int, workers: int) -> Iterator:
    """Every clip once in stored order, shared by ``workers`` (validation): by unit when there are
    enough units, else by clip."""
    if len(counts) >= workers:
        for unit in range(worker, len(counts), workers):
            yield from read(unit)
        return
    position = 0
    for unit in range(len(counts)):
        for clip in read(unit):
            if position % workers == worker:
                yield clip
            position += 1
