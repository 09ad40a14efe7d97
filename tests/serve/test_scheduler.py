"""Block pool and scheduler, without a model: token budget, decode-first hybrid batches,
chunked prefill, preemption by recompute, and block accounting back to zero."""
import pytest

from serve.block_pool import BlockPool, OutOfBlocks
from serve.sampling_params import SamplingParams
from serve.scheduler import Scheduler
from serve.sequence import Sequence, Status


def _seq(i, n, max_tokens=8):
    return Sequence(i, list(range(1, n + 1)), SamplingParams(max_tokens=max_tokens))


def _advance(batch, token=7):
    """What the engine does after a step: tokens computed, one sampled per finished prompt."""
    for seq, n in batch.items:
        seq.num_computed += n
        if seq.num_computed == seq.num_tokens:
            seq.output_ids.append(token)


def test_pool_refcounts_and_free_list():
    p = BlockPool(4, 16)
    a = p.allocate(3)
    assert p.num_free == 1 and sorted(a) == [0, 1, 2]
    p.share(a[:1])
    p.release(a)
    assert p.num_free == 3 and p.ref[a[0]] == 1
    p.release(a[:1])
    assert p.num_free == 4
    with pytest.raises(OutOfBlocks):
        p.allocate(5)
    with pytest.raises(ValueError, match="released more often"):
        p.release([0])


def test_budget_decode_first_and_chunked_prefill():
    pool = BlockPool(64, 4)
    s = Scheduler(pool, max_num_batched_tokens=10, max_num_seqs=8)
    short, long = _seq(0, 3), _seq(1, 25)
    s.add(short)
    s.add(long)
    b = s.schedule()                                   # short prompt whole, long prompt's first chunk
    assert [(q.seq_id, n) for q, n in b.items] == [(0, 3), (1, 7)]
    _advance(b)
    b = s.schedule()                                   # the decode first, then the next chunk
    assert [(q.seq_id, n) for q, n in b.items] == [(0, 1), (1, 9)]
    _advance(b)
    b = s.schedule()
    assert [(q.seq_id, n) for q, n in b.items] == [(0, 1), (1, 9)]
    _advance(b)
    assert long.num_computed == 25 and long.output_ids == [7]   # the prompt ended inside a step
    assert all(len(q.block_ids) * 4 >= q.num_computed for q in (short, long))


def test_max_num_seqs_and_waiting_for_blocks():
    pool = BlockPool(3, 4)
    s = Scheduler(pool, max_num_batched_tokens=100, max_num_seqs=1)
    a, b = _seq(0, 4), _seq(1, 4)
    s.add(a)
    s.add(b)
    batch = s.schedule()
    assert [q.seq_id for q, _ in batch.items] == [0] and b.status is Status.WAITING
    s.finish(a, "stop")
    assert pool.num_free == 3


def test_preemption_frees_blocks_and_recomputes():
    pool = BlockPool(4, 4)                             # 16 token slots in all
    s = Scheduler(pool, max_num_batched_tokens=64, max_num_seqs=8)
    a, b = _seq(0, 8), _seq(1, 8)
    s.add(a)
    s.add(b)
    _advance(s.schedule())                             # both prompts: 4 blocks used, none free
    assert pool.num_free == 0
    batch = s.schedule()                               # a's decode needs a 3rd block: b gives way
    assert batch.preempted == [b] and [q.seq_id for q, _ in batch.items] == [0]
    assert b.status is Status.WAITING and b.num_computed == 0 and b.block_ids == []
    assert s.waiting[0] is b and b.tokens == list(range(1, 9)) + [7]
    s.finish(a, "stop")
    batch = s.schedule()                               # b recomputes prompt + its output so far
    assert [(q.seq_id, n) for q, n in batch.items] == [(1, 9)]
    s.finish(b, "stop")
    assert pool.num_free == pool.num_blocks
