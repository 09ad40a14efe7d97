"""A Llama-family decoder (Llama, Qwen2, SmolLM2) whose every op runs through the artifacts.

Per step: one attention plan for the batch's stages (made by the runner), then per layer

    rmsnorm (+ residual) -> QKV linear (+ bias) -> rope(q), rope(k) -> paged KV write
    -> ONE meta_attention launch for the whole mixed batch -> O linear
    -> rmsnorm (+ residual) -> gate/up linear -> silu_mul -> down linear

and the final norm and output projection only for the rows that sample (gathered with the
embed kernel). The residual stream is updated in place by the fused add+rmsnorm kernel. No op
falls back to plain torch: torch only allocates buffers and takes views.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Llama", "StepInputs", "rope_tables"]


@dataclass
class StepInputs:
    ids: torch.Tensor           # int32 [T] token ids of the step
    positions: torch.Tensor     # int32 [T] position of each token in its sequence
    slots: torch.Tensor         # int32 [T] KV-cache slot (block * BS + offset) of each token
    plan: object                # runtime.plan.Plan of the step's stages
    block_table: torch.Tensor   # int32 [NSEQ, MAXB]
    sample_rows: torch.Tensor   # int32 [S] rows of T whose logits are wanted


def rope_tables(head_dim: int, theta: float, max_pos: int, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """cos / sin f32 [max_pos, head_dim / 2], computed as Hugging Face's Llama rotary embedding
    does (f32 inverse frequencies, f32 products) so positions rotate bit for bit alike."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).to(torch.float32) / head_dim))
    freqs = torch.arange(max_pos, dtype=torch.int64).to(torch.float32)[:, None] * inv[None, :]
    return freqs.cos().contiguous().to(device), freqs.sin().contiguous().to(device)


class Llama:
    def __init__(self, cfg, weights: dict, arts, max_pos: int):
        self.cfg = cfg
        self.w = weights
        self.arts = arts
        dev = weights["embed"].device
        self.cos, self.sin = rope_tables(cfg.head_dim, cfg.rope_theta, max_pos, dev)
        self.layers = [{k: weights.get(f"layers.{i}.{k}") for k in
                        ("input_norm", "qkv", "qkv_bias", "o", "post_norm", "gate_up", "down")}
                       for i in range(cfg.num_layers)]

    def forward(self, s: StepInputs, k_cache: torch.Tensor, v_cache: torch.Tensor) -> torch.Tensor:
        """Logits f32 [S, vocab] of the sample rows; K/V of the step's tokens written into the
        caches ([layers, NB, BS, HKV, D] each)."""
        a, c, w = self.arts, self.cfg, self.w
        T = s.ids.shape[0]
        hq, hkv, d, eps = c.num_heads, c.num_kv_heads, c.head_dim, c.rms_eps
        inter = c.intermediate_size
        r = a.embed(w["embed"], s.ids)                     # the residual stream [T, H]
        x = a.rmsnorm(r, self.layers[0]["input_norm"], eps)
        attn = torch.empty((T, hq, d), dtype=r.dtype, device=r.device)
        down = None
        for i, L in enumerate(self.layers):
            if i:
                x = a.rmsnorm(down, L["input_norm"], eps, residual=r)
            qkv = a.linear(x, L["qkv"], bias=L["qkv_bias"])
            q = qkv[:, : hq * d].view(T, hq, d)
            k = qkv[:, hq * d: (hq + hkv) * d].view(T, hkv, d)
            v = qkv[:, (hq + hkv) * d:].view(T, hkv, d)
            a.rope(q, s.positions, self.cos, self.sin)
            a.rope(k, s.positions, self.cos, self.sin)
            a.kv_write(k, v, k_cache[i], v_cache[i], s.slots)
            a.run(s.plan, q, k_cache[i], v_cache[i], s.block_table, attn)
            o = a.linear(attn.view(T, hq * d), L["o"])
            x = a.rmsnorm(o, L["post_norm"], eps, residual=r)
            gu = a.linear(x, L["gate_up"])
            h = a.silu_mul(gu[:, :inter], gu[:, inter:])
            down = a.linear(h, L["down"])
        rs = a.embed(r, s.sample_rows)                     # only the rows that sample
        ds = a.embed(down, s.sample_rows)
        xs = a.rmsnorm(ds, w["norm"], eps, residual=rs)
        logits = a.linear(xs, w["lm_head"])
        return logits.float()
