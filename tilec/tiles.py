"""Architecture-aware GEMM tile sizes for an Ascend target, from the simulator's cycle model.

Every (BM, BN, BK) from ``SIZES`` is specialised, lowered and checked for legality (capacity,
alignment, fractals: the rejection names buffer and bytes); each legal one is timed with
``codegen.ascend.sim.model_gemm`` (the simulator's own per-pipe cycle model, no data, floored
by HBM bandwidth: ``Stats.bound_cycles``), and the fastest wins; at equal time (both at
the HBM floor) the one with less pipe time, then the smaller on-chip footprint. All numbers
are MODELLED.

``attention_report`` does the same for Meta-Attention per stage kind (decode, verify, prefill)
through ``tilec.attention_tiles.attention_tile_choice`` (``tilec tiles --kernel
meta_attention --stage S``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

SIZES = (16, 32, 64, 128, 256)


@dataclass
class Candidate:
    BM: int
    BN: int
    BK: int
    legal: bool
    reason: str = ""                  # why it is illegal
    cycles: int = 0
    utilisation: float = 0.0          # useful MACs / (cycles x Cube MACs per cycle x AI cores)
    tasks: int = 0
    busy: dict = field(default_factory=dict)
    hbm_bound: bool = False           # the HBM floor, not the pipes, sets its time
    pipe_cycles: int = 0              # the per-core pipe model alone

    @property
    def tile(self) -> str:
        return f"{self.BM}x{self.BN}x{self.BK}"

    @property
    def volume(self) -> int:
        return self.BM * self.BN * self.BK


def gemm_candidates(kernel: str, M: int, N: int, K: int, dtype: str = "f16",
                    target="ascend910b2", sizes=SIZES) -> list[Candidate]:
    from codegen.ascend import AscendLegalityError, lower_gemm
    from codegen.ascend.sim import model_gemm
    from tilec import targets as T
    from tilec.selftest import specialise
    tgt = T.get(target) if isinstance(target, str) else target
    out = []
    for bm in sizes:
        for bn in sizes:
            for bk in sizes:
                c = Candidate(bm, bn, bk, legal=True)
                try:
                    prog = lower_gemm(specialise(kernel, DT=dtype, BM=bm, BN=bn, BK=bk, N=N, K=K), tgt)
                except AscendLegalityError as e:
                    c.legal, c.reason = False, str(e)
                    out.append(c)
                    continue
                st = model_gemm(prog, M, N, K, tgt)
                c.cycles, c.tasks, c.busy = st.bound_cycles, st.tasks, dict(st.busy_cycles)
                c.hbm_bound, c.pipe_cycles = st.hbm_cycles > st.cycles, st.cycles
                peak = tgt.cube_macs_per_cycle[dtype] * tgt.aic_cores * st.bound_cycles
                c.utilisation = M * N * K / peak if peak else 0.0
                out.append(c)
    return out


def choose(cands: list[Candidate]) -> Candidate:
    legal = [c for c in cands if c.legal]
    if not legal:
        raise ValueError("no legal tile")
    # at equal time (the HBM floor) prefer the least pipe time, then the smaller footprint
    return min(legal, key=lambda c: (c.cycles, c.pipe_cycles, c.volume))


def why_slower(c: Candidate, best: Candidate, cores: int) -> str:
    """A short reason a legal candidate lost to ``best`` in the model."""
    parts = [f"{c.cycles / best.cycles:.2f}x the cycles"]
    if c.hbm_bound and best.hbm_bound and c.cycles == best.cycles:
        return (f"same time (both at the HBM floor) but {c.pipe_cycles / best.pipe_cycles:.2f}x "
                "the pipe time")
    if c.tasks < cores and c.tasks < best.tasks:
        parts.append(f"only {c.tasks} tasks for {cores} AI cores")
    pipe = max(c.busy, key=c.busy.get)
    if c.busy.get("CUBE", 0) > best.busy.get("CUBE", 0) * 1.05:
        parts.append(f"Cube works {c.busy['CUBE'] / max(best.busy['CUBE'], 1):.2f}x as long "
                     "(whole tiles over padded rows)")
    elif pipe != "CUBE":
        parts.append(f"{pipe}-bound")
    return "; ".join(parts)


def report(kernel: str, M: int, N: int, K: int, dtype: str, target) -> tuple[str, Candidate]:
    from tilec import targets as T
    tgt = T.get(target) if isinstance(target, str) else target
    cands = gemm_candidates(kernel, M, N, K, dtype, tgt)
    best = choose(cands)
    legal = sorted((c for c in cands if c.legal), key=lambda c: (c.cycles, c.pipe_cycles, c.volume))
    lines = [f"{kernel} M={M} N={N} K={K} {dtype} on {tgt.name} (MODELLED by the tile-machine "
             f"simulator's cycle model)",
             f"choice: BM={best.BM} BN={best.BN} BK={best.BK}: {best.cycles} cycles "
             f"({best.cycles / tgt.clock_hz * 1e6:.1f} us{', at the HBM floor' if best.hbm_bound else ''}"
             f"), Cube utilisation {100 * best.utilisation:.1f}%, {best.tasks} tasks on "
             f"{tgt.aic_cores} AI cores",
             f"{len(legal)} legal of {len(cands)} candidates; fastest:"]
    for c in legal[:5]:
        lines.append(f"  {c.tile:<12} {c.cycles:>12} cycles  util {100 * c.utilisation:5.1f}%  "
                     f"tasks {c.tasks}{'  (HBM floor)' if c.hbm_bound else ''}")
    bigger = [c for c in cands if c.volume > best.volume
              and c.BM >= best.BM and c.BN >= best.BN and c.BK >= best.BK]
    if bigger:
        lines.append("larger candidates and why they lost:")
        for c in sorted(bigger, key=lambda c: (c.volume, c.BM, c.BN, c.BK)):
            why = f"illegal: {c.reason}" if not c.legal else why_slower(c, best, tgt.aic_cores)
            lines.append(f"  {c.tile:<12} {why}")
    return "\n".join(lines), best


# --------------------------------------------------------------------------- Meta-Attention

STAGES = ("decode", "verify", "prefill")


def attention_report(stage: str, target, *, group: int = 4, head_dim: int = 128, dtype: str = "f16",
                     context: int = 1024, tokens: int = 512, bm_candidates=None,
                     bn_candidates=None) -> tuple[str, object]:
    """The modelled best Meta-Attention tile for one stage kind
    (tilec.attention_tiles.attention_tile_choice) as text: the choice with its modelled
    time, and every other candidate with why it lost (slower, or illegal on the target)."""
    import re

    from tilec.attention_tiles import BM_CANDIDATES, BN_CANDIDATES, attention_tile_choice
    from tilec import targets as T
    tgt = T.get(target) if isinstance(target, str) else target
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    tokens = min(tokens, context) if stage == "prefill" else tokens
    c = attention_tile_choice(stage, tgt.name, group=group, head_dim=head_dim, dtype=dtype,
                              kv_len=context, tokens=tokens,
                              bm_candidates=tuple(bm_candidates or BM_CANDIDATES),
                              bn_candidates=tuple(bn_candidates or BN_CANDIDATES))
    batch = {"decode": f"{tgt.aic_cores} decodes (one per AI core) at context {context}",
             "verify": f"{tgt.aic_cores} 5-token tree verifies at context {context}",
             "prefill": f"one {tokens}-token prefill chunk ending at context {context}"}[stage]
    lines = [f"meta_attention {stage} on {tgt.name}, G={group} D={head_dim} {dtype}: {batch} "
             f"(MODELLED by the tile-machine simulator's cycle model)",
             f"choice: BM={c.BM} BN={c.BN}: {c.pipeline} pipeline, window {c.window}, {c.cycles} cycles "
             f"({c.cycles / tgt.clock_hz * 1e6:.1f} us) for {c.rows} query rows "
             f"({c.cycles_per_row:.1f} cycles/row)"]
    if c.rejected:
        lines.append("other candidates and why they lost:")
    # one line per candidate (the chooser may list a candidate it first kept, then replaced)
    seen = set()
    def order(r):   # slower ones fastest first, then the illegal ones
        m = re.match(r"slower: (\d+)", r[2])
        return (m is None, int(m.group(1)) if m else 0, r[0], r[1])
    for bm, bn, why in sorted(c.rejected, key=order):
        if (bm, bn) in seen or (bm, bn) == (c.BM, c.BN):
            continue
        seen.add((bm, bn))
        m = re.match(r"slower: (\d+) modelled cycles", why)
        why = (f"slower: {m.group(1)} cycles, {int(m.group(1)) / c.cycles:.2f}x the choice" if m
               else f"illegal: {why}")
        lines.append(f"  BM={bm:<4} BN={bn:<4} {why}")
    return "\n".join(lines), c
