"""Bad input at the runtime's boundary: a one-line InvalidArgument naming the argument, before
anything is launched; M = 0 is a no-op; NaN passes through as NaN."""
import numpy as np
import pytest
import torch

from runtime.artifacts import InvalidArgument, open_artifacts
from runtime.plan import Stage


@pytest.fixture(scope="module")
def arts(layer_arts):
    return open_artifacts(layer_arts)


def _raises(match):
    return pytest.raises(InvalidArgument, match=match)


def test_linear_arguments(arts):
    x, w = torch.randn(4, 64), torch.randn(32, 64)
    with _raises(r"linear: w: dtype torch.float16 differs from x's torch.float32"):
        arts.linear(x, w.half())
    with _raises(r"linear: x is \[M, K\] = \(4, 64\) but w is \[N, K\] = \(32, 48\)"):
        arts.linear(x, torch.randn(32, 48))
    with _raises(r"linear: x: expected 2 dims"):
        arts.linear(torch.randn(2, 4, 64), w)
    with _raises(r"linear: w: on meta, x is on cpu"):
        arts.linear(x, torch.empty(32, 64, device="meta"))
    with _raises(r"linear: x: expected a torch tensor or numpy array, got list"):
        arts.linear([[1.0] * 64], w)
    with _raises(r"linear: x: dtype torch.float64 is not served"):
        arts.linear(x.double(), w.double())
    with _raises(r"linear: out: shape \(4, 31\), expected \(4, 32\)"):
        arts.linear(x, w, out=torch.empty(4, 31))
    with _raises(r"linear: out: overlapping memory"):
        arts.linear(x, w, out=torch.empty(1, 32).expand(4, 32))
    ro = np.zeros((4, 32), np.float32)
    ro.flags.writeable = False
    with _raises(r"linear: out: the array is read-only"):
        arts.linear(x.numpy(), w.numpy(), out=ro)


def test_empty_batch_is_a_no_op_and_nan_passes_through(arts):
    w = torch.randn(32, 64)
    y = arts.linear(torch.empty(0, 64), w)
    assert tuple(y.shape) == (0, 32)
    x = torch.randn(3, 64)
    x[1, 5] = float("nan")
    y = arts.linear(x, w)
    assert torch.isnan(y[1]).all() and not torch.isnan(y[[0, 2]]).any()
    h = torch.randn(2, 96)
    h[0, 0] = float("nan")
    n = arts.rmsnorm(h, torch.ones(96), 1e-5)
    assert torch.isnan(n[0]).all() and not torch.isnan(n[1]).any()


def test_layer_op_indices_are_checked(arts):
    with _raises(r"embed: ids: value 50 at \[1\] is outside \[0, 50\)"):
        arts.embed(torch.randn(50, 8), torch.tensor([3, 50], dtype=torch.int32))
    with _raises(r"embed: ids must be int32"):
        arts.embed(torch.randn(50, 8), torch.tensor([3, 4]))
    k = torch.randn(2, 2, 64)
    kc = torch.zeros(3, 4, 2, 64)
    with _raises(r"kv_write: slots: value 12 at \[1\] is outside \[-1, 12\)"):
        arts.kv_write(k, k, kc, kc.clone(), torch.tensor([0, 12], dtype=torch.int32))
    with _raises(r"kv_write: two rows target the same cache slot"):
        arts.kv_write(k, k, kc, kc.clone(), torch.tensor([5, 5], dtype=torch.int32))
    with _raises(r"kv_write: caches must be"):
        arts.kv_write(k, k, torch.zeros(3, 4, 1, 64), torch.zeros(3, 4, 1, 64), torch.zeros(2, dtype=torch.int32))
    cos = torch.zeros(8, 32)
    with _raises(r"rope: positions: value 8 at \[0\] is outside \[0, 8\)"):
        arts.rope(torch.randn(1, 2, 64), torch.tensor([8], dtype=torch.int32), cos, cos)
    with _raises(r"rope: cos must be f32 \[NP, 32\]"):
        arts.rope(torch.randn(1, 2, 64), torch.tensor([0], dtype=torch.int32), cos.half(), cos)
    with _raises(r"rmsnorm: residual: shape"):
        arts.rmsnorm(torch.randn(2, 96), torch.ones(96), 1e-5, residual=torch.zeros(3, 96))


def _attn(arts, stages, bt, nb=4, bs=4, T=None):
    T = sum(s.num_tokens for s in stages) if T is None else T
    q = torch.randn(T, 8, 64)
    kc = torch.randn(nb, bs, 2, 64)
    p = arts.plan(stages, 2, 4, 64, "f32")
    arts.run(p, q, kc, kc.clone(), torch.tensor(bt, dtype=torch.int32), torch.empty_like(q))


def test_attention_indices_are_checked_before_launch(arts):
    """The block table against the cache and the contexts: one request never reads another's KV."""
    ok = [Stage.prefill(0, 0, 3), Stage.decode(1, 3, 5)]
    _attn(arts, ok, [[0, 1], [2, 3]])
    with _raises(r"block_table: stage 1 \(sequence 1\) block 1 is 4, the cache has 4 blocks"):
        _attn(arts, ok, [[0, 1], [2, 4]])
    with _raises(r"block_table: stage 1 \(sequence 1\) block 0 is -1"):
        _attn(arts, ok, [[0, 1], [-1, 3]])
    with _raises(r"block_table: stage 1 has context 6 = 2 blocks of 4, the table has 1 columns"):
        _attn(arts, ok, [[0], [2]])
    with _raises(r"block_table: stage 1 is sequence 1, the table has 1 rows"):
        _attn(arts, ok, [[0, 1]])
    with _raises(r"block_table: stage 0 has context 40000 = 10000 blocks"):
        _attn(arts, [Stage.decode(0, 0, 39999)], [[0, 1]])
    with _raises(r"attention: the plan covers 4 query tokens, q has 5"):
        _attn(arts, ok, [[0, 1], [2, 3]], T=5)
    with _raises(r"plan: stages 0 and 1 overlap in Q"):
        _attn(arts, [Stage.prefill(0, 0, 3), Stage.decode(1, 2, 5)], [[0, 1], [2, 3]])
    with _raises(r"stages leave Q tokens \[3, 4\) uncovered"):
        _attn(arts, [Stage.prefill(0, 0, 3), Stage.decode(1, 4, 5)], [[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="context_len must be >= 0"):
        Stage.decode(0, 0, -1)
    with pytest.raises(ValueError, match="exceed the int32 range"):
        Stage.decode(0, 0, 2**31 - 1)


def test_attention_tensor_arguments(arts):
    p = arts.plan([Stage.decode(0, 0, 3)], 2, 4, 64, "f32")
    q, kc, bt = torch.randn(1, 8, 64), torch.randn(2, 4, 2, 64), torch.zeros(1, 1, dtype=torch.int32)
    with _raises(r"attention: k_cache: dtype torch.float16 differs from q's"):
        arts.run(p, q, kc.half(), kc.half(), bt, torch.empty_like(q))
    with _raises(r"attention: block_table must be int32"):
        arts.run(p, q, kc, kc, bt.long(), torch.empty_like(q))
    with _raises(r"attention: the plan is for 2 KV heads x G=4, got q with 4 heads"):
        arts.run(p, torch.randn(1, 4, 64), kc, kc, bt, torch.empty(1, 4, 64))
    with _raises(r"attention: out: shape"):
        arts.run(p, q, kc, kc, bt, torch.empty(1, 8, 32))
