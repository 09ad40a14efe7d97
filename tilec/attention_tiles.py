"""Modelled best Meta-Attention tile (BM, BN) per stage type, for the tile chooser.

Tile choice sits with tuning, above the backends: it builds test batches, plans them and runs
the Ascend lowering on the simulator, so codegen/ never imports the runtime or the harness.

For a stage kind the chooser builds a representative batch (``prefill``: one chunk of
``tokens`` query tokens after ``kv_len - tokens`` cached ones; ``decode``: one decode per AI
core at ``kv_len``; ``verify``: one 5-token tree verify per AI core at ``kv_len``), lowers
every legal candidate with the pipeline the rule picks for that batch, runs it through the
simulator and keeps the fastest per query row. Illegal candidates are reported with the
legality message; slower ones with their modelled time. All figures are MODELLED.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from codegen.ascend.errors import AscendLegalityError
from tilec import targets as T

BM_CANDIDATES = (16, 32, 64, 128)
BN_CANDIDATES = (32, 64, 128)


@dataclass(frozen=True)
class TileChoice:
    stage_kind: str
    target: str
    BM: int
    BN: int
    pipeline: str
    window: int
    cycles: int                      # modelled launch cycles of the representative batch
    rows: int                        # query rows (tokens x G) of that batch
    rejected: tuple = field(default=())   # (BM, BN, reason)

    @property
    def cycles_per_row(self) -> float:
        return self.cycles / max(self.rows, 1)


def _batch(kind, kv_len, tokens, cores):
    from tilec.testing.attention_cases import decode, prefill, verify
    if kind == "prefill":
        return [prefill(tokens, max(0, kv_len - tokens))]
    if kind == "decode":
        return [decode(kv_len) for _ in range(cores)]
    if kind == "verify":
        return [verify(5, kv_len, True) for _ in range(cores)]
    raise ValueError(f"stage kind must be prefill, decode or verify, got {kind!r}")


@functools.lru_cache(maxsize=64)
def _choose(kind, target, group, head_dim, dtype, kv_len, tokens, bms, bns):
    from runtime.plan import plan
    from tilec.selftest import specialise
    from tilec.testing.attention_cases import make_attention_case

    from codegen.ascend.attention import fit_window, max_window, run
    from codegen.ascend.attention.lower import choose_pipeline
    from codegen.ascend.attention.recognise import recognise

    tgt = T.get(target)
    case = make_attention_case(0, _batch(kind, kv_len, tokens, tgt.aic_cores), group, 1,
                               head_dim, 128, dtype)
    rows = sum(s.num_tokens for s in case.stages) * group
    best, rejected = None, []
    for bm in bms:
        for bn in bns:
            if bm % group:
                rejected.append((bm, bn, f"BM={bm} is not a multiple of the GQA group {group}"))
                continue
            k = specialise("meta_attention", DT=dtype, BM=bm, BN=bn, D=head_dim, G=group)
            spec = recognise(k)
            rows_per_tile = {"prefill": bm, "verify": bm, "decode": bm}
            p = plan(case.stages, 1, group, bm, tgt.aic_cores, tile_rows=rows_per_tile)
            w4 = max_window(spec, tgt, "4-stage")
            if w4 is None:
                try:
                    from codegen.ascend.attention.lower import lower_attention
                    lower_attention(k, tgt, "4-stage")
                except AscendLegalityError as e:
                    rejected.append((bm, bn, str(e).split(": ", 1)[-1]))
                continue
            pipeline = choose_pipeline(p.task_table, w4,
                                       kinds=[s.kind for s in case.stages])
            if pipeline == "2-stage" and max_window(spec, tgt, "2-stage") is None:
                pipeline = "4-stage"
            window = fit_window(spec, tgt, p.task_table, pipeline)
            args = {"Q": case.q, "KC": case.k_cache, "VC": case.v_cache,
                    "O": np.zeros_like(case.q), "BT": case.block_table,
                    "TASKS": p.task_table, "TREE": p.tree_mask, "scale": case.scale}
            st = run(k, args, tgt, pipeline=pipeline, window=window, assignment=p.assignment)
            cand = TileChoice(kind, tgt.name, bm, bn, pipeline, window or w4, st.cycles, rows)
            if best is None or cand.cycles < best.cycles:
                if best is not None:
                    rejected.append((best.BM, best.BN, f"slower: {best.cycles} modelled cycles"))
                best = cand
            else:
                rejected.append((bm, bn, f"slower: {cand.cycles} modelled cycles"))
    if best is None:
        raise AscendLegalityError(f"no legal attention tile for {kind} on {tgt.name}: "
                                  + "; ".join(r for _, _, r in rejected))
    return TileChoice(best.stage_kind, best.target, best.BM, best.BN, best.pipeline,
                      best.window, best.cycles, best.rows, tuple(rejected))


def attention_tile_choice(stage_kind: str, target="ascend910b2", *, group: int = 4,
                          head_dim: int = 128, dtype: str = "f16", kv_len: int = 1024,
                          tokens: int = 512, bm_candidates=BM_CANDIDATES,
                          bn_candidates=BN_CANDIDATES) -> TileChoice:
    """Modelled best (BM, BN) for one stage type (MODELLED by the simulator's cycle model)."""
    name = target if isinstance(target, str) else target.name
    return _choose(stage_kind, name, group, head_dim, dtype, kv_len, tokens,
                   tuple(bm_candidates), tuple(bn_candidates))
