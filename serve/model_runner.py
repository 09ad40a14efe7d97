"""Turning a scheduled batch into one step of the model: the step's inputs (token ids,
positions, KV slots, the block table), the attention plan of its stages (prefill chunks with
their context, decodes), the forward pass over the paged KV cache, and sampling."""
from __future__ import annotations

import numpy as np
import torch

from runtime.plan import Stage

from .llama import Llama, StepInputs
from .scheduler import ScheduledBatch

__all__ = ["ModelRunner", "kv_bytes_per_block"]


def kv_bytes_per_block(cfg, block_size: int, dtype: torch.dtype) -> int:
    itemsize = torch.empty((), dtype=dtype).element_size()
    return 2 * cfg.num_layers * block_size * cfg.num_kv_heads * cfg.head_dim * itemsize


class ModelRunner:
    def __init__(self, model, arts, num_blocks: int, block_size: int, max_model_len: int):
        self.cfg = model.config
        self.arts = arts
        self.block_size = block_size
        w = model.weights
        self.dtype = w["embed"].dtype
        self.device = w["embed"].device
        self.dtype_name = model.dtype
        shape = (self.cfg.num_layers, num_blocks, block_size, self.cfg.num_kv_heads, self.cfg.head_dim)
        self.k_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.v_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.llama = Llama(self.cfg, w, arts, max_model_len)
        self.last_plan = None

    def prepare(self, batch: ScheduledBatch) -> tuple[StepInputs, list]:
        """The step's inputs, and (sequence, first sample row, rows) for each sequence whose
        logits are wanted: the last row of a finished prompt or decode, every node of a
        verify."""
        bs = self.block_size
        ids, pos, slots, stages, rows, wanted = [], [], [], [], [], []
        maxb = max(len(seq.block_ids) for seq, _ in batch.items)
        table = np.zeros((len(batch.items), maxb), np.int32)
        q = 0
        for row, (seq, n) in enumerate(batch.items):
            start = seq.num_computed
            blocks = np.asarray(seq.block_ids, dtype=np.int64)
            table[row, : len(blocks)] = blocks
            p = np.arange(start, start + n, dtype=np.int64)          # KV slots, in order
            slots.append((blocks[p // bs] * bs + p % bs).astype(np.int32))
            d = seq.draft
            if d is not None:                       # verify: the last token, then the draft tree
                ids.append(np.asarray(d.tokens, np.int32))
                pos.append((start + np.asarray(d.depths)).astype(np.int32))
                stages.append(Stage.verify(row, q, n, start, None if d.is_chain else d.mask()))
                wanted.append((seq, len(rows), n))
                rows.extend(range(q, q + n))
            else:
                ids.append(np.asarray(seq.tokens[start:start + n], np.int32))
                pos.append(p.astype(np.int32))
                if n == 1 and start > 0:
                    stages.append(Stage.decode(row, q, start))
                else:
                    stages.append(Stage.prefill(row, q, n, start))
                if start + n == seq.num_tokens:    # every known token computed: sample the next
                    wanted.append((seq, len(rows), 1))
                    rows.append(q + n - 1)
            q += n
        dev = self.device
        plan = self.arts.plan(stages, self.cfg.num_kv_heads, self.cfg.group, self.cfg.head_dim, self.dtype_name)
        self.last_plan = plan
        inputs = StepInputs(
            ids=torch.from_numpy(np.concatenate(ids)).to(dev),
            positions=torch.from_numpy(np.concatenate(pos)).to(dev),
            slots=torch.from_numpy(np.concatenate(slots)).to(dev),
            plan=plan, block_table=torch.from_numpy(table).to(dev),
            sample_rows=torch.tensor(rows, dtype=torch.int32, device=dev))
        return inputs, wanted

    @torch.inference_mode()
    def run(self, batch: ScheduledBatch) -> tuple[torch.Tensor, list]:
        """Run one step: first the batch's KV copies (copy-on-write of a cached partial
        block), then the forward. (logits of the wanted rows, (sequence, first row, rows))."""
        for src, dst, n in batch.copies:
            bs = self.block_size
            self.copy_slots(np.arange(n) + src * bs, np.arange(n) + dst * bs)
        inputs, wanted = self.prepare(batch)
        logits = self.llama.forward(inputs, self.k_cache, self.v_cache)
        return logits, wanted

    def copy_slots(self, src, dst) -> None:
        """KV of cache slots ``src`` copied to slots ``dst`` in every layer, through the
        library's row gather (embed) and paged write (kv_write) kernels."""
        if not len(src):
            return
        dev = self.device
        s = torch.as_tensor(np.asarray(src, np.int32), device=dev)
        d = torch.as_tensor(np.asarray(dst, np.int32), device=dev)
        _, nb, bs, hkv, hd = self.k_cache.shape
        for layer in range(self.cfg.num_layers):
            kc, vc = self.k_cache[layer], self.v_cache[layer]
            k = self.arts.embed(kc.view(nb * bs, hkv * hd), s).view(-1, hkv, hd)
            v = self.arts.embed(vc.view(nb * bs, hkv * hd), s).view(-1, hkv, hd)
            self.arts.kv_write(k, v, kc, vc, d)

    def logits(self, batch: ScheduledBatch) -> torch.Tensor:
        """The step's sample-row logits without sampling (tests and near-tie reports)."""
        with torch.inference_mode():
            inputs, _ = self.prepare(batch)
            return self.llama.forward(inputs, self.k_cache, self.v_cache)
