"""Every layer op of the opened artifacts (linear, rmsnorm with and without the residual,
rope, silu_mul, embed, kv_write, attention) against a torch oracle, on every backend that runs
here: cpu (generated torch), native (C++), reference (the entries' IR on the numpy interpreter), triton
(Triton's interpreter without a GPU; tiny shapes) and ascend-sim (the Ascend entries on the
simulator; embed and kv_write are not lowered for Ascend and say so)."""
import numpy as np
import pytest
import torch

from runtime.artifacts import ArtifactError, open_artifacts
from runtime.plan import Stage
from tilec import cache

BACKENDS = {   # artifacts backend -> (target, backend the entries are compiled with, dtypes)
    "cpu": ("cpu", "cpu", ("f32", "f16")),
    "native": ("cpu", "native", ("f32", "f16")),
    "reference": ("cpu", "reference", ("f32", "f16")),
    "triton": ("cpu", "triton", ("f16",)),
    "ascend-sim": ("ascend910b2", "ascend", ("f16",)),
}
TORCH = {"f32": torch.float32, "f16": torch.float16}
TOL = {"f32": dict(rtol=1e-5, atol=1e-5), "f16": dict(rtol=2e-2, atol=2e-2)}


@pytest.fixture(scope="module")
def arts_dir(tmp_path_factory, layer_jobs_for):
    d = tmp_path_factory.mktemp("multi-arts")
    jobs = []
    for target, backend, dts in BACKENDS.values():
        if backend == "triton":
            pytest.importorskip("triton")
        jobs += layer_jobs_for([(target, backend)], dts)
    stats = cache.compile_jobs(jobs, d, workers=2)
    assert stats.failed == 0, stats.errors
    return d


def _open(arts_dir, name):
    target = BACKENDS[name][0]
    return open_artifacts(arts_dir, backend=name, target=target)


def _cases():
    for name, (_, _, dts) in BACKENDS.items():
        for dt in dts:
            yield pytest.param(name, dt, id=f"{name}-{dt}")


def _rand(g, shape, dt):
    return torch.randn(*shape, generator=g).to(TORCH[dt])


def _close(a, b, dt, what):
    torch.testing.assert_close(a.float(), b.float(), **TOL[dt], msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("name,dt", list(_cases()))
def test_linear_norm_act(arts_dir, name, dt):
    arts = _open(arts_dir, name)
    g = torch.Generator().manual_seed(1)
    M = 3 if name == "triton" else 37
    x, w = _rand(g, (M, 64), dt), _rand(g, (48, 64), dt)
    _close(arts.linear(x, w), x.float() @ w.float().T, dt, "linear")
    b = _rand(g, (48,), dt)
    _close(arts.linear(x, w, bias=b), x.float() @ w.float().T + b.float(), dt, "linear + bias")
    # rmsnorm, then the residual form: r += x; y = norm(r)
    h, nw = _rand(g, (M, 96), dt), _rand(g, (96,), dt)
    ref = h.float() * torch.rsqrt(h.float().pow(2).mean(1, keepdim=True) + 1e-5) * nw.float()
    _close(arts.rmsnorm(h, nw, 1e-5), ref, dt, "rmsnorm")
    r = _rand(g, (M, 96), dt)
    r_ref = (r.float() + h.float()).to(TORCH[dt])
    y = arts.rmsnorm(h, nw, 1e-5, residual=r)
    _close(r, r_ref, dt, "residual")
    rf = r_ref.float()
    _close(y, rf * torch.rsqrt(rf.pow(2).mean(1, keepdim=True) + 1e-5) * nw.float(), dt, "add_rmsnorm")
    # silu_mul on two strided halves of one gate-up projection
    gu = _rand(g, (M, 2 * 80), dt)
    out = arts.silu_mul(gu[:, :80], gu[:, 80:])
    _close(out, torch.nn.functional.silu(gu[:, :80].float()) * gu[:, 80:].float(), dt, "silu_mul")


@pytest.mark.parametrize("T", [5, 32])      # 32: whole tiles, where the cpu backend loads views
@pytest.mark.parametrize("name,dt", list(_cases()))
def test_rope_in_place_on_a_strided_view(arts_dir, name, dt, T):
    if name == "triton" and T > 5:
        pytest.skip("Triton's interpreter is slow; one shape is enough there")
    arts = _open(arts_dir, name)
    g = torch.Generator().manual_seed(2)
    H, D = 3, 64
    qkv = _rand(g, (T, (H + 2) * D), dt)
    q = qkv[:, : H * D].view(T, H, D)             # a view into the QKV projection's output
    before = q.float().clone()
    pos = torch.randint(0, 40, (T,), generator=g, dtype=torch.int32)
    inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    ang = torch.arange(40, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cos(ang).float(), torch.sin(ang).float()
    rest = qkv[:, H * D:].clone()
    arts.rope(q, pos, cos, sin)
    c, s = cos[pos.long()][:, None, :], sin[pos.long()][:, None, :]
    x1, x2 = before[..., : D // 2], before[..., D // 2:]
    ref = torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], -1)
    _close(q, ref, dt, "rope")
    assert torch.equal(qkv[:, H * D:], rest)      # nothing outside the view was touched


@pytest.mark.parametrize("name,dt", list(_cases()))
def test_embed_and_kv_write(arts_dir, name, dt):
    arts = _open(arts_dir, name)
    g = torch.Generator().manual_seed(3)
    table = _rand(g, (50, 96), dt)
    ids = torch.tensor([4, 0, 49, 4, 17], dtype=torch.int32)
    k, v = _rand(g, (5, 2, 64), dt), _rand(g, (5, 2, 64), dt)
    kc, vc = torch.zeros(6, 4, 2, 64, dtype=TORCH[dt]), torch.zeros(6, 4, 2, 64, dtype=TORCH[dt])
    slots = torch.tensor([0, 5, 23, -1, 9], dtype=torch.int32)
    if name == "ascend-sim":     # gathers/scatters are not lowered to the AIV vector unit
        with pytest.raises(ArtifactError, match="no ascend/ascend910b2 variant of embed"):
            arts.embed(table, ids)
        pytest.skip("embed and kv_write have no Ascend lowering (their compile records why)")
    assert torch.equal(arts.embed(table, ids), table[ids.long()])
    arts.kv_write(k, v, kc, vc, slots)
    want_k, want_v = torch.zeros_like(kc), torch.zeros_like(vc)
    for t, s in enumerate(slots.tolist()):
        if s >= 0:
            want_k[s // 4, s % 4], want_v[s // 4, s % 4] = k[t], v[t]
    assert torch.equal(kc, want_k) and torch.equal(vc, want_v)


@pytest.mark.parametrize("name,dt", [p for p in _cases() if p.values[0] != "triton"])
def test_attention_mixed_batch(arts_dir, name, dt):
    """One launch for a prefill chunk, a decode and a chain verify, vs torch SDPA per stage."""
    arts = _open(arts_dir, name)
    g = torch.Generator().manual_seed(4)
    hkv, G, D, BS = 2, 4, 64, 4
    stages = [Stage.prefill(0, 0, 6, context_len=3), Stage.decode(1, 6, context_len=9),
              Stage.verify(2, 7, 3, context_len=5)]
    kv_lens = [9, 10, 8]
    nb = 12
    kc, vc = _rand(g, (nb, BS, hkv, D), dt), _rand(g, (nb, BS, hkv, D), dt)
    bt = torch.tensor([[3, 7, 1], [0, 2, 4], [11, 6, 0]], dtype=torch.int32)
    q = _rand(g, (10, hkv * G, D), dt)
    out = torch.zeros_like(q)
    p = arts.plan(stages, hkv, G, D, dt, num_cores=24 if name == "ascend-sim" else None)
    arts.run(p, q, kc, vc, bt, out)
    for st, kvl in zip(stages, kv_lens):
        blocks = bt[st.seq].long()
        keys = kc[blocks].reshape(-1, hkv, D)[:kvl].float().repeat_interleave(G, 1)
        vals = vc[blocks].reshape(-1, hkv, D)[:kvl].float().repeat_interleave(G, 1)
        qs = q[st.q_start: st.q_start + st.num_tokens].float()
        pos = torch.arange(st.context_len, st.context_len + st.num_tokens)
        mask = torch.arange(kvl)[None, :] <= pos[:, None]
        ref = torch.nn.functional.scaled_dot_product_attention(
            qs.transpose(0, 1), keys.transpose(0, 1), vals.transpose(0, 1), attn_mask=mask).transpose(0, 1)
        _close(out[st.q_start: st.q_start + st.num_tokens], ref, dt, f"attention {st.kind}")
