"""The step-indexed sampler: resumable, epoch-permuted, and sharded over ranks without overlap."""

from vmas.data.tokens import StepSampler


def test_resumed_stream_is_the_tail_of_the_whole_one():
    whole = list(StepSampler(10, 4, total_steps=6, seed=1))
    assert list(StepSampler(10, 4, total_steps=6, start_step=2, seed=1)) == whole[8:]
    assert len(whole) == 24 and sorted(whole[:10]) == list(range(10))  # each epoch is a permutation


def test_ranks_split_each_global_batch():
    one = list(StepSampler(16, 2, total_steps=4, seed=0))
    ranks = [list(StepSampler(16, 2, total_steps=2, seed=0, rank=r, world=2)) for r in range(2)]
    # steps 0-1 of two ranks cover exactly the items of steps 0-3 of one rank, without overlap
    assert sorted(ranks[0] + ranks[1]) == sorted(one)
    assert not set(ranks[0]) & set(ranks[1])
