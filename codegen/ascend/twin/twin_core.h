// tilec's executable twin of the Ascend C API subset the emitters use: the machine under it.
//
// One AI core of an Atlas A2 (910B, arch 2201) is an AIC (Cube) and two AIVs (vector), each a
// set of in-order pipes (S, V, M, MTE1, MTE2, MTE3, FIX) with private on-chip buffers. Here each
// sub-core is a host thread; each pipe's instructions run when the thread reaches them, and a
// vector clock per pipe records what that pipe is known to have waited for. Every access to a
// buffer (GM, UB, L1, L0A/B/C) is checked against the last write and the reads since (32-byte
// granularity): a pipe that touches data another pipe wrote (or read) without a flag that
// orders them is reported as a race with both kernel lines. Cross-core flags block the thread.
// Written from the public Ascend C API reference (hiascend.com, "Ascend C API", pages cited at
// each function in kernel_operator.h); no CANN header was copied.
#pragma once
#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#define __aicore__
#define __global__
#define __gm__
#define GM_ADDR uint8_t *

namespace twin {

struct Loc {
    const char *file;
    int line;
    static Loc Here(const char *f = __builtin_FILE(), int l = __builtin_LINE()) { return Loc{f, l}; }
};

enum Pipe : int { P_S = 0, P_V, P_M, P_MTE1, P_MTE2, P_MTE3, P_FIX, NPIPE };
inline const char *PipeName(int p)
{
    static const char *n[] = {"PIPE_S", "PIPE_V", "PIPE_M", "PIPE_MTE1", "PIPE_MTE2", "PIPE_MTE3", "PIPE_FIX"};
    return n[p];
}
enum class Kind { AIC, AIV };
enum class Launch { AIV_ONLY, AIC_ONLY, MIX_AIC_1_2 };
enum Space : int { GM = 0, UB, L1, L0A, L0B, L0C, NSPACE };
inline const char *SpaceName(int s)
{
    static const char *n[] = {"GM", "UB", "L1", "L0A", "L0B", "L0C"};
    return n[s];
}

// Capacities of one 910B AI core (Ascend910B ini: l1_size 524288, l0_a/b_size 65536,
// l0_c_size 131072, ub_size 196608 per AIV). UB_RESERVED: kept free for the vector unit's
// own scratch (see DESIGN notes of issue 14; set TILEC_TWIN_UB_RESERVED=0 to lift it).
constexpr uint32_t CAPACITY[NSPACE] = {0, 196608, 524288, 65536, 65536, 131072};
inline uint32_t UbReserved()
{
    const char *e = std::getenv("TILEC_TWIN_UB_RESERVED");
    return e ? (uint32_t)std::atoi(e) : 8192u;
}

constexpr int NSUB = 3;                 // AIC, AIV0, AIV1
constexpr int NID = NSUB * NPIPE;       // clock entries: one per (sub-core, pipe)
struct Clock {
    std::array<uint32_t, NID> c{};
    void Merge(const Clock &o)
    {
        for (int i = 0; i < NID; ++i) c[i] = std::max(c[i], o.c[i]);
    }
};

[[noreturn]] inline void Die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    std::fprintf(stderr, "ascendc-twin: ");
    std::vfprintf(stderr, fmt, ap);
    std::fprintf(stderr, "\n");
    va_end(ap);
    std::fflush(stderr);
    std::_Exit(3);
}

// Last write and reads since, per 32-byte block of a buffer.
struct Shadow {
    uint32_t epoch = 0;
    int16_t wid = -1;               // writer clock id (sub * NPIPE + pipe), -1: none
    uint32_t wclk = 0;
    int wline = 0;
    std::array<uint32_t, NID> rclk{};
    std::array<int, NID> rline{};
};

struct SubCore;
inline thread_local SubCore *g_cur = nullptr;

struct SubCore {
    Kind kind = Kind::AIV;
    int sub = 1;                    // 0 AIC, 1 AIV0, 2 AIV1
    int64_t blockIdx = 0, blockNum = 1;
    Clock vc[NPIPE];                // what each pipe knows
    uint32_t issued[NPIPE] = {};
    std::vector<uint8_t> mem[NSPACE];
    std::vector<Shadow> shadow[NSPACE];
    uint32_t used[NSPACE] = {};     // bytes handed out by TPipe::InitBuffer
    std::map<std::array<int, 3>, Clock> events;     // (src pipe, dst pipe, id) -> setter's clock
    void *pipe = nullptr;           // the TPipe constructed on this sub-core

    int Id(int p) const { return sub * NPIPE + p; }
    // an instruction on pipe p: its stamp; in-order pipes know their own past, PIPE_V only
    // after PipeBarrier<PIPE_V> (or a flag round trip), see PipeBarrier in kernel_operator.h
    uint32_t Issue(int p)
    {
        uint32_t s = ++issued[p];
        if (p != P_V) vc[p].c[Id(p)] = s;
        return s;
    }
    Clock Published(int p) const    // a flag set on pipe p waits for p's earlier work
    {
        Clock c = vc[p];
        c.c[Id(p)] = issued[p];
        return c;
    }
    const char *Name() const
    {
        static const char *n[] = {"AIC", "AIV0", "AIV1"};
        return n[sub];
    }
};

inline SubCore &Cur()
{
    if (!g_cur) Die("an Ascend C API was called outside a kernel launch");
    return *g_cur;
}

// ---- global memory: buffers from aclrtMalloc, shared by every sub-core ---------------------
struct GmRegion {
    uint8_t *base;
    size_t len;
    std::vector<Shadow> shadow;
};
struct Gm {
    std::mutex mu;
    std::map<uintptr_t, GmRegion> regions;
    uint32_t epoch = 1;             // one per AI core run in turn: earlier cores are ordered
};
inline Gm &GmState()
{
    static Gm g;
    return g;
}
inline GmRegion *FindGm(const void *p, size_t len)
{
    auto &g = GmState();
    uintptr_t a = (uintptr_t)p;
    auto it = g.regions.upper_bound(a);
    if (it == g.regions.begin()) return nullptr;
    --it;
    if (a < it->first || a + len > it->first + it->second.len) return nullptr;
    return &it->second;
}

// Check then record an access of [off, off + len) in one space of the current sub-core (or GM).
inline void Access(std::vector<Shadow> &sh, uint32_t epoch, size_t off, size_t len, int pipe,
                   bool write, uint32_t stamp, const Loc &loc, const char *what)
{
    SubCore &c = Cur();
    int me = c.Id(pipe);
    const Clock &k = c.vc[pipe];
    for (size_t b = off / 32; b < (off + len + 31) / 32 && len > 0; ++b) {
        Shadow &s = sh[b];
        if (s.epoch != epoch) {
            s = Shadow();
            s.epoch = epoch;
        }
        // same in-order pipe: ordered; PIPE_V reading a PIPE_V result needs PipeBarrier<PIPE_V>
        // (RAW only: the vector unit issues in order, so write-after-write needs no barrier)
        if (s.wid >= 0 && (s.wid != me || (pipe == P_V && !write)) && k.c[s.wid] < s.wclk &&
            !(s.wid == me && s.wclk == stamp)) {
            Die("%s:%d: race: %s %s %s (block 0x%zx) written by %s of %s at line %d, with no flag "
                "(or PipeBarrier) ordering that write before this access (%s, core %lld)",
                loc.file, loc.line, PipeName(pipe), write ? "writes" : "reads", what, b * 32,
                PipeName(s.wid % NPIPE), s.wid / NPIPE == 0 ? "AIC" : s.wid / NPIPE == 1 ? "AIV0" : "AIV1",
                s.wline, c.Name(), (long long)c.blockIdx);
        }
        if (write) {
            for (int r = 0; r < NID; ++r) {
                // a scalar load completes before the scalar unit issues anything after it, so
                // a read by this sub-core's PIPE_S never races a later write
                if (s.rclk[r] && r != me && r != c.Id(P_S) && k.c[r] < s.rclk[r]) {
                    Die("%s:%d: race: %s overwrites %s (block 0x%zx) that %s of %s read at line %d "
                        "with no flag ordering that read first (%s, core %lld)",
                        loc.file, loc.line, PipeName(pipe), what, b * 32, PipeName(r % NPIPE),
                        r / NPIPE == 0 ? "AIC" : r / NPIPE == 1 ? "AIV0" : "AIV1", s.rline[r], c.Name(),
                        (long long)c.blockIdx);
                }
            }
            s.wid = (int16_t)me;
            s.wclk = stamp;
            s.wline = loc.line;
            s.rclk.fill(0);
        } else {
            s.rclk[me] = std::max(s.rclk[me], stamp);
            s.rline[me] = loc.line;
        }
    }
}

inline void GmAccess(const void *p, size_t len, int pipe, bool write, uint32_t stamp, const Loc &loc)
{
    auto &g = GmState();
    std::lock_guard<std::mutex> lk(g.mu);
    GmRegion *r = FindGm(p, len);
    if (!r)
        Die("%s:%d: %s %s %zu bytes of GM at %p, outside every buffer the host allocated",
            loc.file, loc.line, PipeName(pipe), write ? "writes" : "reads", len, p);
    Access(r->shadow, g.epoch, (uint8_t *)p - r->base, len, pipe, write, stamp, loc, "GM");
}

// ---- cross-core flags (mode 2: AIC <-> its two AIVs) --------------------------------------
struct Group {
    std::mutex mu;
    std::condition_variable cv;
    // toAiv[k][f]: AIC sets pending for AIV k; toAic[k][f]: AIV k sets pending for the AIC
    std::vector<Clock> toAiv[2][16], toAic[2][16];
    int waiting[3] = {-1, -1, -1};  // flag each sub-core waits for, -1: running
    bool finished[3] = {false, false, false};
    bool dead = false;
    bool Ready(int sub, int f) const
    {
        if (sub == 0) return !toAic[0][f].empty() && !toAic[1][f].empty();
        return !toAiv[sub - 1][f].empty();
    }
    // every sub-core finished or waiting for a flag nobody has set: nothing can move again
    bool Stuck() const
    {
        for (int s = 0; s < 3; ++s)
            if (!finished[s] && (waiting[s] < 0 || Ready(s, waiting[s]))) return false;
        return true;
    }
};
inline Group *&CurGroup()
{
    thread_local Group *g = nullptr;
    return g;
}

using KernelFn = std::function<void()>;
inline Launch &LaunchType()
{
    static Launch t = Launch::AIV_ONLY;
    return t;
}

inline void RunSub(SubCore &c, const KernelFn &fn)
{
    g_cur = &c;
    c.mem[UB].assign(c.kind == Kind::AIV ? CAPACITY[UB] : 0, 0xFF);     // garbage: NaN patterns
    for (int s : {L1, L0A, L0B, L0C}) c.mem[s].assign(c.kind == Kind::AIC ? CAPACITY[s] : 0, 0xFF);
    for (int s = UB; s < NSPACE; ++s) c.shadow[s].assign(c.mem[s].size() / 32 + 1, Shadow());
    fn();
    g_cur = nullptr;
}

// Run a kernel over blockDim AI cores, one after another (the order cannot matter: each
// core's GM writes are disjoint in a correct kernel).
inline uint32_t Run(Launch type, uint32_t blockDim, const KernelFn &fn)
{
    LaunchType() = type;
    if (blockDim == 0) Die("launch with blockDim 0");
    for (uint32_t b = 0; b < blockDim; ++b) {
        {
            std::lock_guard<std::mutex> lk(GmState().mu);
            ++GmState().epoch;
        }
        if (type != Launch::MIX_AIC_1_2) {
            SubCore c;
            c.kind = type == Launch::AIC_ONLY ? Kind::AIC : Kind::AIV;
            c.sub = type == Launch::AIC_ONLY ? 0 : 1;
            c.blockIdx = b;
            c.blockNum = blockDim;
            RunSub(c, fn);
            continue;
        }
        Group grp;
        SubCore cs[3];
        std::thread th[3];
        for (int s = 0; s < 3; ++s) {
            cs[s].kind = s == 0 ? Kind::AIC : Kind::AIV;
            cs[s].sub = s;
            cs[s].blockIdx = s == 0 ? b : 2 * b + (s - 1);
            cs[s].blockNum = blockDim;
            th[s] = std::thread([&, s] {
                CurGroup() = &grp;
                RunSub(cs[s], fn);
                std::lock_guard<std::mutex> lk(grp.mu);
                grp.finished[s] = true;
                if (grp.Stuck()) grp.dead = true;
                grp.cv.notify_all();
            });
        }
        for (auto &t : th) t.join();
    }
    return 0;
}

// TILEC_TWIN_TRACE=1: log every cross-core flag to stderr (for debugging a deadlock)
inline bool Trace()
{
    static bool t = std::getenv("TILEC_TWIN_TRACE") != nullptr;
    return t;
}

inline bool IsAic() { return Cur().kind == Kind::AIC; }
inline bool IsAiv() { return Cur().kind == Kind::AIV; }

}  // namespace twin
