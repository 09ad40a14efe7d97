// Typed declarations of the Ascend C API subset tilec's emitters use, for Atlas A2 (910B,
// __NPU_ARCH__ 2201), implemented with the documented semantics so the emitted kernels run on a
// CPU (see twin_core.h). Signatures, template parameters and enum values follow the Ascend C API
// reference (CANN 8.x, hiascend.com "Ascend C API" / ascendcopapi); each function names the
// reference page it follows by title (and by page id where that was checked). A call the documentation does not
// allow (deduction conflicts, unsupported dtype or mode, misaligned or short operands) is a
// compile error or a run-time report with the kernel line, never silently accepted.
#pragma once
#include <cmath>
#include <initializer_list>
#include <type_traits>

#include "twin_core.h"

typedef _Float16 half;

// bfloat16: storage + round-to-nearest-even conversion (API reference: "数据类型定义" / data types)
struct bfloat16_t {
    uint16_t bits = 0;
    bfloat16_t() = default;
    template <typename V, typename = std::enable_if_t<std::is_arithmetic<V>::value>>
    bfloat16_t(V v)
    {
        float f = (float)v;
        uint32_t u;
        std::memcpy(&u, &f, 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) { bits = 0x7fc0; return; }
        u += 0x7fffu + ((u >> 16) & 1u);
        bits = (uint16_t)(u >> 16);
    }
    operator float() const
    {
        uint32_t u = (uint32_t)bits << 16;
        float f;
        std::memcpy(&f, &u, 4);
        return f;
    }
};

// pipe_t (API reference: "PipeBarrier"): hardware pipes
enum pipe_t { PIPE_S = twin::P_S, PIPE_V = twin::P_V, PIPE_M = twin::P_M, PIPE_MTE1 = twin::P_MTE1,
              PIPE_MTE2 = twin::P_MTE2, PIPE_MTE3 = twin::P_MTE3, PIPE_FIX = twin::P_FIX, PIPE_ALL = 100 };

#define ASCEND_IS_AIC (::twin::IsAic())
#define ASCEND_IS_AIV (::twin::IsAiv())
// atlasascendc_api_07_0218 "设置Kernel类型": the launch must start the cores the kernel says
#define KERNEL_TASK_TYPE_DEFAULT(t) ::AscendC::CheckKernelType(::AscendC::t, ::twin::Loc::Here())

namespace AscendC {

enum KernelMetaType { KERNEL_TYPE_AIV_ONLY, KERNEL_TYPE_AIC_ONLY, KERNEL_TYPE_MIX_AIC_1_2 };
inline void CheckKernelType(KernelMetaType t, twin::Loc loc)
{
    twin::Launch want = t == KERNEL_TYPE_AIV_ONLY ? twin::Launch::AIV_ONLY
                      : t == KERNEL_TYPE_AIC_ONLY ? twin::Launch::AIC_ONLY : twin::Launch::MIX_AIC_1_2;
    if (want != twin::LaunchType())
        twin::Die("%s:%d: kernel declares type %d but was launched as %d", loc.file, loc.line, (int)want,
                  (int)twin::LaunchType());
}

// TPosition / QuePosition (API reference: "TPosition")
enum class TPosition { GM, A1, A2, B1, B2, C1, C2, CO1, CO2, VECIN, VECOUT, VECCALC };
using QuePosition = TPosition;

inline int SpaceOf(TPosition p)
{
    switch (p) {
    case TPosition::A1: case TPosition::B1: case TPosition::C1: return twin::L1;
    case TPosition::A2: return twin::L0A;
    case TPosition::B2: return twin::L0B;
    case TPosition::CO1: return twin::L0C;
    case TPosition::VECIN: case TPosition::VECOUT: case TPosition::VECCALC: return twin::UB;
    default: return twin::GM;
    }
}

// ---- tensors ---------------------------------------------------------------------------------
// LocalTensor (API reference: "LocalTensor"): a typed view of an on-chip buffer of one sub-core
template <typename T>
class LocalTensor {
public:
    int space = twin::UB;
    uint32_t off = 0;               // bytes from the start of the space
    uint32_t len = 0;               // bytes to the end of the buffer the view came from
    twin::SubCore *owner = nullptr;

    static LocalTensor View(TPosition p, uint32_t off, uint32_t len, twin::SubCore *owner)
    {
        LocalTensor t;
        t.space = SpaceOf(p);
        t.off = off;
        t.len = len;
        t.owner = owner;
        return t;
    }
    LocalTensor operator[](uint32_t i) const
    {
        LocalTensor t = *this;
        if ((uint64_t)i * sizeof(T) > len) twin::Die("LocalTensor[%u] past the end of its %u-byte buffer", i, len);
        t.off += i * sizeof(T);
        t.len -= i * sizeof(T);
        return t;
    }
    T *Ptr() const { return reinterpret_cast<T *>(owner->mem[space].data() + off); }
    uint32_t GetSize() const { return len / sizeof(T); }
    // scalar access: PIPE_S (API reference: "LocalTensor", GetValue/SetValue)
    T GetValue(uint32_t i, twin::Loc loc = twin::Loc::Here()) const
    {
        Check(i, loc);
        auto &c = twin::Cur();
        twin::Access(c.shadow[space], 0, off + i * sizeof(T), sizeof(T), twin::P_S, false, c.Issue(twin::P_S), loc,
                     twin::SpaceName(space));
        return Ptr()[i];
    }
    void SetValue(uint32_t i, T v, twin::Loc loc = twin::Loc::Here()) const
    {
        Check(i, loc);
        auto &c = twin::Cur();
        twin::Access(c.shadow[space], 0, off + i * sizeof(T), sizeof(T), twin::P_S, true, c.Issue(twin::P_S), loc,
                     twin::SpaceName(space));
        Ptr()[i] = v;
    }

private:
    void Check(uint32_t i, const twin::Loc &loc) const
    {
        if (owner != &twin::Cur()) twin::Die("%s:%d: LocalTensor used on a sub-core that did not allocate it", loc.file, loc.line);
        if ((uint64_t)(i + 1) * sizeof(T) > len)
            twin::Die("%s:%d: element %u past the end of a %u-byte buffer", loc.file, loc.line, i, len);
    }
};

// GlobalTensor (API reference: "GlobalTensor"): GM of a buffer the host allocated
template <typename T>
class GlobalTensor {
public:
    T *base = nullptr;
    uint64_t size = 0;
    void SetGlobalBuffer(__gm__ T *p, uint64_t n, twin::Loc loc = twin::Loc::Here())
    {
        std::lock_guard<std::mutex> lk(twin::GmState().mu);
        if (n && !twin::FindGm(p, n * sizeof(T)))
            twin::Die("%s:%d: SetGlobalBuffer of %llu elements runs past the buffer the host allocated",
                      loc.file, loc.line, (unsigned long long)n);
        base = p;
        size = n;
    }
    GlobalTensor operator[](uint64_t i) const
    {
        GlobalTensor g = *this;
        g.base += i;
        g.size = i > size ? 0 : size - i;
        return g;
    }
    uint64_t GetSize() const { return size; }
    T GetValue(uint64_t i, twin::Loc loc = twin::Loc::Here()) const
    {
        Range(i, 1, loc);
        twin::GmAccess(base + i, sizeof(T), twin::P_S, false, twin::Cur().Issue(twin::P_S), loc);
        return base[i];
    }
    void SetValue(uint64_t i, T v, twin::Loc loc = twin::Loc::Here()) const
    {
        Range(i, 1, loc);
        twin::GmAccess(base + i, sizeof(T), twin::P_S, true, twin::Cur().Issue(twin::P_S), loc);
        base[i] = v;
    }
    void Range(uint64_t i, uint64_t n, const twin::Loc &loc) const
    {
        if (i + n > size)
            twin::Die("%s:%d: GM elements [%llu, %llu) outside the GlobalTensor's %llu", loc.file, loc.line,
                      (unsigned long long)i, (unsigned long long)(i + n), (unsigned long long)size);
    }
};

// ---- sync (API reference: "SetFlag/WaitFlag(ISASI)", "PipeBarrier(ISASI)") -----------------
enum class HardEvent { MTE2_MTE1, MTE1_MTE2, MTE1_M, M_MTE1, M_FIX, FIX_M, MTE2_V, V_MTE2, V_MTE3, MTE3_V,
                       V_S, S_V, MTE2_S, S_MTE2, MTE3_S, S_MTE3, MTE2_MTE3, MTE3_MTE2, FIX_S, S_FIX, M_V, V_M };
enum event_t { EVENT_ID0, EVENT_ID1, EVENT_ID2, EVENT_ID3, EVENT_ID4, EVENT_ID5, EVENT_ID6, EVENT_ID7 };

inline void EventPipes(HardEvent e, int &src, int &dst)
{
    using namespace twin;
    static const int t[][2] = {{P_MTE2, P_MTE1}, {P_MTE1, P_MTE2}, {P_MTE1, P_M}, {P_M, P_MTE1}, {P_M, P_FIX},
                               {P_FIX, P_M}, {P_MTE2, P_V}, {P_V, P_MTE2}, {P_V, P_MTE3}, {P_MTE3, P_V},
                               {P_V, P_S}, {P_S, P_V}, {P_MTE2, P_S}, {P_S, P_MTE2}, {P_MTE3, P_S},
                               {P_S, P_MTE3}, {P_MTE2, P_MTE3}, {P_MTE3, P_MTE2}, {P_FIX, P_S}, {P_S, P_FIX},
                               {P_M, P_V}, {P_V, P_M}};
    src = t[(int)e][0];
    dst = t[(int)e][1];
}

// An event flag is one bit per (src, dst, id): set twice before a wait loses a hand-over.
inline void DoSetFlag(HardEvent e, int32_t id, const twin::Loc &loc)
{
    int s, d;
    EventPipes(e, s, d);
    auto &c = twin::Cur();
    if (id < 0 || id > 7) twin::Die("%s:%d: SetFlag event id %d outside 0..7", loc.file, loc.line, id);
    std::array<int, 3> k{s, d, id};
    if (c.events.count(k))
        twin::Die("%s:%d: SetFlag<%s_%s>(%d) while that flag is already set (no WaitFlag since)", loc.file,
                  loc.line, twin::PipeName(s), twin::PipeName(d), id);
    c.events[k] = c.Published(s);
}
inline void DoWaitFlag(HardEvent e, int32_t id, const twin::Loc &loc)
{
    int s, d;
    EventPipes(e, s, d);
    auto &c = twin::Cur();
    std::array<int, 3> k{s, d, id};
    auto it = c.events.find(k);
    if (it == c.events.end())
        twin::Die("%s:%d: WaitFlag<%s_%s>(%d) with no SetFlag pending: %s would wait forever", loc.file, loc.line,
                  twin::PipeName(s), twin::PipeName(d), id, twin::PipeName(d));
    c.vc[d].Merge(it->second);
    c.events.erase(it);
}
template <HardEvent E>
inline void SetFlag(int32_t id, twin::Loc loc = twin::Loc::Here()) { DoSetFlag(E, id, loc); }
template <HardEvent E>
inline void WaitFlag(int32_t id, twin::Loc loc = twin::Loc::Here()) { DoWaitFlag(E, id, loc); }

// PipeBarrier<PIPE_V>: later vector instructions see earlier ones' results (the vector unit
// does not order dependent instructions by itself); PIPE_ALL: every pipe waits for every other.
template <pipe_t P>
inline void PipeBarrier()
{
    auto &c = twin::Cur();
    if (P == PIPE_ALL) {
        twin::Clock all;
        for (int p = 0; p < twin::NPIPE; ++p) all.Merge(c.Published(p));
        for (int p = 0; p < twin::NPIPE; ++p) c.vc[p].Merge(all);
        return;
    }
    c.vc[P].c[c.Id(P)] = c.issued[P];
}

// CrossCoreSetFlag / CrossCoreWaitFlag (API reference: "CrossCoreSetFlag(ISASI)" / "CrossCoreWaitFlag(ISASI)", pages
// atlasascendc_api_07_0273 / 07_0274 of CANN 8.0.0): mode 2 only here.
// AIC set -> both AIVs' counters +1; both AIVs set -> the AIC's counter +1; a wait blocks the
// whole sub-core (on A2 every pipe stops until the counter is positive). flagId 0..10;
// a counter holds at most 15 pending sets.
template <uint8_t modeId, pipe_t pipe>
inline void CrossCoreSetFlag(uint16_t flagId, twin::Loc loc = twin::Loc::Here())
{
    static_assert(pipe != PIPE_S && pipe != PIPE_ALL, "CrossCoreSetFlag: pipe may not be PIPE_S or PIPE_ALL");
    if (modeId != 2) twin::Die("%s:%d: the twin models CrossCoreSetFlag mode 2 only", loc.file, loc.line);
    if (flagId > 10) twin::Die("%s:%d: flagId %u outside 0..10 (A2)", loc.file, loc.line, flagId);
    auto &c = twin::Cur();
    twin::Group *g = twin::CurGroup();
    if (!g) twin::Die("%s:%d: CrossCoreSetFlag in a kernel not launched as MIX_AIC_1_2", loc.file, loc.line);
    twin::Clock pub = c.Published(pipe);
    std::lock_guard<std::mutex> lk(g->mu);
    if (twin::Trace()) std::fprintf(stderr, "twin: %s core %lld line %d: CrossCoreSetFlag(%u)\n", c.Name(), (long long)c.blockIdx, loc.line, flagId);
    if (c.sub == 0) {
        for (int k = 0; k < 2; ++k) {
            if (g->toAiv[k][flagId].size() >= 15)
                twin::Die("%s:%d: cross-core flag %u set 16 times with no wait", loc.file, loc.line, flagId);
            g->toAiv[k][flagId].push_back(pub);
        }
    } else {
        if (g->toAic[c.sub - 1][flagId].size() >= 15)
            twin::Die("%s:%d: cross-core flag %u set 16 times with no wait", loc.file, loc.line, flagId);
        g->toAic[c.sub - 1][flagId].push_back(pub);
    }
    g->cv.notify_all();
}

inline void CrossCoreWaitFlag(uint16_t flagId, twin::Loc loc = twin::Loc::Here())
{
    auto &c = twin::Cur();
    twin::Group *g = twin::CurGroup();
    if (!g) twin::Die("%s:%d: CrossCoreWaitFlag in a kernel not launched as MIX_AIC_1_2", loc.file, loc.line);
    if (flagId > 10) twin::Die("%s:%d: flagId %u outside 0..10 (A2)", loc.file, loc.line, flagId);
    std::unique_lock<std::mutex> lk(g->mu);
    if (twin::Trace()) std::fprintf(stderr, "twin: %s core %lld line %d: CrossCoreWaitFlag(%u)\n", c.Name(), (long long)c.blockIdx, loc.line, flagId);
    if (!g->Ready(c.sub, flagId)) {
        g->waiting[c.sub] = flagId;
        if (g->Stuck()) {
            g->dead = true;
            g->cv.notify_all();
        }
        g->cv.wait(lk, [&] { return g->Ready(c.sub, flagId) || g->dead; });
        g->waiting[c.sub] = -1;
        if (!g->Ready(c.sub, flagId))
            twin::Die("%s:%d: deadlock: %s of core %lld waits for cross-core flag %u that no sub-core will set",
                      loc.file, loc.line, c.Name(), (long long)c.blockIdx, flagId);
    }
    twin::Clock got;
    if (c.sub == 0) {
        for (int k = 0; k < 2; ++k) {
            got.Merge(g->toAic[k][flagId].front());
            g->toAic[k][flagId].erase(g->toAic[k][flagId].begin());
        }
    } else {
        got = g->toAiv[c.sub - 1][flagId].front();
        g->toAiv[c.sub - 1][flagId].erase(g->toAiv[c.sub - 1][flagId].begin());
    }
    for (int p = 0; p < twin::NPIPE; ++p) c.vc[p].Merge(got);
}

// GetBlockIdx / GetBlockNum (API reference: "GetBlockIdx" / "GetBlockNum"): on an AIV of a mixed kernel
// the index runs over 2 * blockDim, the number stays blockDim
inline int64_t GetBlockIdx() { return twin::Cur().blockIdx; }
inline int64_t GetBlockNum() { return twin::Cur().blockNum; }

// ---- memory management: TPipe, TQue, TBuf (API reference: "TPipe", "TQue", "TBuf") ------------------
class TPipe;
inline TPipe *&CurPipe() { return *reinterpret_cast<TPipe **>(&twin::Cur().pipe); }

template <TPosition P>
class TBuf {
public:
    uint32_t off = 0, len = 0;
    twin::SubCore *owner = nullptr;
    template <typename T>
    LocalTensor<T> Get(twin::Loc loc = twin::Loc::Here())
    {
        if (!owner) twin::Die("%s:%d: TBuf::Get before TPipe::InitBuffer", loc.file, loc.line);
        return LocalTensor<T>::View(P, off, len, owner);
    }
};

template <TPosition P, int32_t depth>
class TQue {
public:
    struct Slot { uint32_t off; int state = 0; bool freed = false; twin::Clock freeClk, enqClk; };
    std::vector<Slot> slots;
    uint32_t len = 0;
    twin::SubCore *owner = nullptr;
    size_t next = 0;
    std::vector<size_t> queued;

    // producer and consumer pipes of the queue's position
    static void Pipes(int &prod, int &cons)
    {
        switch (P) {
        case TPosition::VECIN: prod = twin::P_MTE2; cons = twin::P_V; break;
        case TPosition::VECOUT: prod = twin::P_V; cons = twin::P_MTE3; break;
        case TPosition::A1: case TPosition::B1: prod = twin::P_MTE2; cons = twin::P_MTE1; break;
        case TPosition::A2: case TPosition::B2: prod = twin::P_MTE1; cons = twin::P_M; break;
        case TPosition::CO1: prod = twin::P_M; cons = twin::P_FIX; break;
        default: prod = cons = twin::P_V;
        }
    }
    template <typename T>
    LocalTensor<T> AllocTensor(twin::Loc loc = twin::Loc::Here())
    {
        for (size_t n = 0; n < slots.size(); ++n) {
            Slot &s = slots[(next + n) % slots.size()];
            if (s.state != 0) continue;
            next = (next + n + 1) % slots.size();
            int prod, cons;
            Pipes(prod, cons);
            if (s.freed) owner->vc[prod].Merge(s.freeClk);     // wait for the consumer's release
            s.state = 1;
            return LocalTensor<T>::View(P, s.off, len, owner);
        }
        twin::Die("%s:%d: AllocTensor: all %zu buffers of the queue are in use", loc.file, loc.line, slots.size());
    }
    template <typename T>
    void EnQue(const LocalTensor<T> &t, twin::Loc loc = twin::Loc::Here())
    {
        Slot &s = Find(t.off, loc);
        int prod, cons;
        Pipes(prod, cons);
        s.enqClk = owner->Published(prod);
        s.state = 2;
        queued.push_back(&s - slots.data());
    }
    template <typename T>
    LocalTensor<T> DeQue(twin::Loc loc = twin::Loc::Here())
    {
        if (queued.empty()) twin::Die("%s:%d: DeQue on an empty queue", loc.file, loc.line);
        Slot &s = slots[queued.front()];
        queued.erase(queued.begin());
        int prod, cons;
        Pipes(prod, cons);
        owner->vc[cons].Merge(s.enqClk);
        s.state = 3;
        return LocalTensor<T>::View(P, s.off, len, owner);
    }
    template <typename T>
    void FreeTensor(const LocalTensor<T> &t, twin::Loc loc = twin::Loc::Here())
    {
        Slot &s = Find(t.off, loc);
        int prod, cons;
        Pipes(prod, cons);
        s.freeClk = owner->Published(cons);
        s.freed = true;
        s.state = 0;
    }

private:
    Slot &Find(uint32_t off, const twin::Loc &loc)
    {
        for (auto &s : slots)
            if (s.off == off) return s;
        twin::Die("%s:%d: tensor does not belong to this queue", loc.file, loc.line);
    }
};

class TPipe {
public:
    TPipe() { twin::Cur().pipe = this; }
    template <TPosition P>
    void InitBuffer(TBuf<P> &b, uint32_t len, twin::Loc loc = twin::Loc::Here())
    {
        b.off = Alloc(SpaceOf(P), len, loc);
        b.len = len;
        b.owner = &twin::Cur();
    }
    template <TPosition P, int32_t depth>
    void InitBuffer(TQue<P, depth> &q, uint8_t num, uint32_t len, twin::Loc loc = twin::Loc::Here())
    {
        if (num < 1) twin::Die("%s:%d: InitBuffer of a queue with no buffers", loc.file, loc.line);
        q.len = len;
        q.owner = &twin::Cur();
        for (int i = 0; i < num; ++i) {
            typename TQue<P, depth>::Slot s;
            s.off = Alloc(SpaceOf(P), len, loc);
            q.slots.push_back(s);
        }
    }
    // the lowest event id of that pair with no SetFlag pending
    int32_t FetchEventID(HardEvent e)
    {
        auto &c = twin::Cur();
        int s, d;
        EventPipes(e, s, d);
        for (int id = 0; id < 8; ++id)
            if (!c.events.count({s, d, id})) return id;
        twin::Die("FetchEventID: all 8 event ids of %s -> %s are set", twin::PipeName(s), twin::PipeName(d));
    }

private:
    uint32_t Alloc(int space, uint32_t len, const twin::Loc &loc)
    {
        auto &c = twin::Cur();
        uint32_t cap = twin::CAPACITY[space] - (space == twin::UB ? twin::UbReserved() : 0);
        uint32_t align = space == twin::L0A || space == twin::L0B ? 512 : 32;
        uint32_t at = (c.used[space] + align - 1) / align * align;
        if (c.mem[space].empty())
            twin::Die("%s:%d: InitBuffer in %s on %s, which has none", loc.file, loc.line, twin::SpaceName(space), c.Name());
        if ((uint64_t)at + len > cap)
            twin::Die("%s:%d: InitBuffer of %u bytes: %s holds %u usable bytes on 910B and %u are taken", loc.file,
                      loc.line, len, twin::SpaceName(space), cap, at);
        c.used[space] = at + len;
        return at;
    }
};
inline TPipe *GetTPipePtr() { return reinterpret_cast<TPipe *>(twin::Cur().pipe); }

// ---- operand checks shared by the data APIs ----------------------------------------------------
namespace detail {
template <typename T>
inline float F(T v) { return (float)v; }
template <typename T>
inline T To(float v) { return (T)v; }

template <typename T>
inline void Need(const LocalTensor<T> &t, uint64_t elems, int space, const char *api, const char *role,
                 const twin::Loc &loc, uint32_t align = 32)
{
    if (t.owner != &twin::Cur())
        twin::Die("%s:%d: %s: %s is not a buffer of this sub-core", loc.file, loc.line, api, role);
    if (t.space != space)
        twin::Die("%s:%d: %s: %s is in %s, the API takes %s", loc.file, loc.line, api, role,
                  twin::SpaceName(t.space), twin::SpaceName(space));
    if (t.off % align)
        twin::Die("%s:%d: %s: %s starts at byte %u of %s, not %u-byte aligned", loc.file, loc.line, api, role, t.off,
                  twin::SpaceName(space), align);
    if (elems * sizeof(T) > t.len)
        twin::Die("%s:%d: %s: %s needs %llu bytes, its buffer has %u from there", loc.file, loc.line, api, role,
                  (unsigned long long)(elems * sizeof(T)), t.len);
}
template <typename T>
inline void Touch(const LocalTensor<T> &t, uint64_t bytes, int pipe, bool write, uint32_t stamp, const twin::Loc &loc,
                  uint64_t at = 0)
{
    twin::Access(twin::Cur().shadow[t.space], 0, t.off + at, bytes, pipe, write, stamp, loc, twin::SpaceName(t.space));
}
template <typename T>
inline void VecDtype(const char *api, const twin::Loc &loc, bool ints = true)
{
    bool ok = std::is_same<T, half>::value || std::is_same<T, float>::value ||
              (ints && (std::is_same<T, int32_t>::value || std::is_same<T, int16_t>::value));
    if (!ok) twin::Die("%s:%d: %s: element type not supported on A2", loc.file, loc.line, api);
}
// a vector instruction: check, stamp, record reads then the write
template <typename D, typename... S>
inline uint32_t VecOp(const char *api, const twin::Loc &loc, const LocalTensor<D> &dst, uint64_t n,
                      const LocalTensor<S> &...srcs)
{
    Need(dst, n, twin::UB, api, "dst", loc);
    (Need(srcs, n, twin::UB, api, "src", loc), ...);
    uint32_t st = twin::Cur().Issue(twin::P_V);
    (Touch(srcs, n * sizeof(S), twin::P_V, false, st, loc), ...);
    Touch(dst, n * sizeof(D), twin::P_V, true, st, loc);
    return st;
}
}  // namespace detail

// ---- vector: level-2 (first n elements) APIs -------------------------------------------------
// Duplicate (API reference: "Duplicate"): A2 also takes bfloat16_t / unsigned 16/32-bit
template <typename T>
inline void Duplicate(const LocalTensor<T> &dst, const T &scalarValue, const int32_t &count,
                      twin::Loc loc = twin::Loc::Here())
{
    if (!std::is_same<T, bfloat16_t>::value && !std::is_same<T, uint16_t>::value && !std::is_same<T, uint32_t>::value)
        detail::VecDtype<T>("Duplicate", loc);
    detail::VecOp("Duplicate", loc, dst, count);
    T *d = dst.Ptr();
    for (int32_t i = 0; i < count; ++i) d[i] = scalarValue;
}

#define TWIN_BINARY(NAME, EXPR, INTS)                                                                 \
    /* API reference: NAME */                                                                                       \
    template <typename T>                                                                                   \
    inline void NAME(const LocalTensor<T> &dst, const LocalTensor<T> &src0, const LocalTensor<T> &src1,     \
                     const int32_t &count, twin::Loc loc = twin::Loc::Here())                               \
    {                                                                                                       \
        detail::VecDtype<T>(#NAME, loc, INTS);                                                              \
        detail::VecOp(#NAME, loc, dst, count, src0, src1);                                                  \
        T *d = dst.Ptr(), *a = src0.Ptr(), *b = src1.Ptr();                                                 \
        for (int32_t i = 0; i < count; ++i) {                                                               \
            if (std::is_integral<T>::value) {                                                               \
                long long x = (long long)a[i], y = (long long)b[i];                                         \
                d[i] = (T)(EXPR);                                                                           \
            } else {                                                                                        \
                float x = (float)a[i], y = (float)b[i];                                                     \
                d[i] = (T)(EXPR);                                                                           \
            }                                                                                               \
        }                                                                                                   \
    }
TWIN_BINARY(Add, x + y, true)
TWIN_BINARY(Sub, x - y, true)
TWIN_BINARY(Mul, x * y, true)
TWIN_BINARY(Div, x / y, false)
TWIN_BINARY(Max, (x > y ? x : y), true)
TWIN_BINARY(Min, (x < y ? x : y), true)
#undef TWIN_BINARY

#define TWIN_SCALAR(NAME, EXPR, INTS)                                                                 \
    /* API reference: NAME; the scalar has the tensor's element type */                                             \
    template <typename T>                                                                                   \
    inline void NAME(const LocalTensor<T> &dst, const LocalTensor<T> &src, const T &scalarValue,            \
                     const int32_t &count, twin::Loc loc = twin::Loc::Here())                               \
    {                                                                                                       \
        detail::VecDtype<T>(#NAME, loc, INTS);                                                              \
        detail::VecOp(#NAME, loc, dst, count, src);                                                         \
        T *d = dst.Ptr(), *a = src.Ptr();                                                                   \
        for (int32_t i = 0; i < count; ++i) {                                                               \
            if (std::is_integral<T>::value) {                                                               \
                long long x = (long long)a[i], y = (long long)scalarValue;                                  \
                d[i] = (T)(EXPR);                                                                           \
            } else {                                                                                        \
                float x = (float)a[i], y = (float)scalarValue;                                              \
                d[i] = (T)(EXPR);                                                                           \
            }                                                                                               \
        }                                                                                                   \
    }
TWIN_SCALAR(Adds, x + y, true)
TWIN_SCALAR(Muls, x * y, true)
TWIN_SCALAR(Maxs, (x > y ? x : y), true)
TWIN_SCALAR(Mins, (x < y ? x : y), true)
#undef TWIN_SCALAR

#define TWIN_UNARY(NAME, EXPR)                                                                        \
    /* API reference: NAME; half/float */                                                                           \
    template <typename T>                                                                                   \
    inline void NAME(const LocalTensor<T> &dst, const LocalTensor<T> &src, const int32_t &count,            \
                     twin::Loc loc = twin::Loc::Here())                                                     \
    {                                                                                                       \
        detail::VecDtype<T>(#NAME, loc, false);                                                             \
        detail::VecOp(#NAME, loc, dst, count, src);                                                         \
        T *d = dst.Ptr(), *a = src.Ptr();                                                                   \
        for (int32_t i = 0; i < count; ++i) {                                                               \
            float x = (float)a[i];                                                                          \
            d[i] = (T)(EXPR);                                                                               \
        }                                                                                                   \
    }
TWIN_UNARY(Exp, std::exp(x))
TWIN_UNARY(Rsqrt, 1.0f / std::sqrt(x))
TWIN_UNARY(Sqrt, std::sqrt(x))
TWIN_UNARY(Reciprocal, 1.0f / x)
TWIN_UNARY(Abs, std::fabs(x))
#undef TWIN_UNARY

// Cast (API reference: "Cast"): the documented A2 pairs used here. Widening (half/bf16 ->
// float, int32 -> float) takes CAST_NONE; float -> half/bf16 rounds (CAST_RINT or CAST_NONE,
// both to nearest even); float -> int32 takes an explicit rounding mode.
enum class RoundMode { CAST_NONE, CAST_RINT, CAST_FLOOR, CAST_CEIL, CAST_ROUND, CAST_TRUNC, CAST_ODD };
template <typename D, typename S>
inline void Cast(const LocalTensor<D> &dst, const LocalTensor<S> &src, const RoundMode &round_mode,
                 const uint32_t &count, twin::Loc loc = twin::Loc::Here())
{
    constexpr bool f = std::is_same<D, float>::value;
    constexpr bool widen = f && (std::is_same<S, half>::value || std::is_same<S, bfloat16_t>::value ||
                                 std::is_same<S, int32_t>::value);
    constexpr bool narrow = std::is_same<S, float>::value &&
                            (std::is_same<D, half>::value || std::is_same<D, bfloat16_t>::value);
    constexpr bool toint = std::is_same<S, float>::value && std::is_same<D, int32_t>::value;
    static_assert(widen || narrow || toint, "Cast: this source/destination pair is not supported on A2");
    if (widen && round_mode != RoundMode::CAST_NONE)
        twin::Die("%s:%d: Cast to float from a narrower type takes CAST_NONE", loc.file, loc.line);
    if (narrow && round_mode != RoundMode::CAST_RINT && round_mode != RoundMode::CAST_NONE)
        twin::Die("%s:%d: Cast float -> 16-bit: the twin implements CAST_RINT / CAST_NONE only", loc.file, loc.line);
    if (toint && round_mode == RoundMode::CAST_NONE)
        twin::Die("%s:%d: Cast float -> int32 needs a rounding mode", loc.file, loc.line);
    detail::VecOp("Cast", loc, dst, count, src);
    D *d = dst.Ptr();
    S *s = src.Ptr();
    for (uint32_t i = 0; i < count; ++i) {
        float x = (float)s[i];
        if constexpr (std::is_same<D, int32_t>::value) {
            double r = round_mode == RoundMode::CAST_FLOOR ? std::floor(x) : round_mode == RoundMode::CAST_CEIL ? std::ceil(x)
                     : round_mode == RoundMode::CAST_TRUNC ? std::trunc(x) : round_mode == RoundMode::CAST_ROUND ? std::round(x)
                     : std::nearbyint(x);
            d[i] = (int32_t)r;
        } else {
            d[i] = (D)x;
        }
    }
}

// CreateVecIndex (API reference: "CreateVecIndex"): dst[i] = firstValue + i
template <typename T>
inline void CreateVecIndex(LocalTensor<T> dst, const T &firstValue, uint32_t count, twin::Loc loc = twin::Loc::Here())
{
    detail::VecDtype<T>("CreateVecIndex", loc);
    detail::VecOp("CreateVecIndex", loc, dst, count);
    T *d = dst.Ptr();
    for (uint32_t i = 0; i < count; ++i) d[i] = (T)((float)firstValue + (float)i);
}

// ReduceSum / ReduceMax (API reference: "ReduceSum" / "ReduceMax"): result in dst[0]; the work
// tensor must hold one partial per 256-byte repeat, rounded up to 32 bytes
template <typename T>
inline void ReduceCheck(const char *api, const LocalTensor<T> &dst, const LocalTensor<T> &src,
                        const LocalTensor<T> &work, int32_t count, const twin::Loc &loc)
{
    detail::VecDtype<T>(api, loc, false);
    uint32_t per = 256 / sizeof(T);
    uint32_t need = ((count + per - 1) / per * sizeof(T) + 31) / 32 * 32 / sizeof(T);
    detail::Need(dst, 1, twin::UB, api, "dst", loc);
    detail::Need(src, count, twin::UB, api, "src", loc);
    detail::Need(work, need, twin::UB, api, "work", loc);
    uint32_t st = twin::Cur().Issue(twin::P_V);
    detail::Touch(src, count * sizeof(T), twin::P_V, false, st, loc);
    detail::Touch(work, need * sizeof(T), twin::P_V, true, st, loc);
    detail::Touch(dst, sizeof(T), twin::P_V, true, st, loc);
}
template <typename T>
inline void ReduceSum(const LocalTensor<T> &dst, const LocalTensor<T> &src, const LocalTensor<T> &work,
                      const int32_t count, twin::Loc loc = twin::Loc::Here())
{
    ReduceCheck("ReduceSum", dst, src, work, count, loc);
    float s = 0;
    for (int32_t i = 0; i < count; ++i) s += (float)src.Ptr()[i];
    dst.Ptr()[0] = (T)s;
}
template <typename T>
inline void ReduceMax(const LocalTensor<T> &dst, const LocalTensor<T> &src, const LocalTensor<T> &work,
                      const int32_t count, bool calIndex = false, twin::Loc loc = twin::Loc::Here())
{
    ReduceCheck("ReduceMax", dst, src, work, count, loc);
    if (calIndex) twin::Die("%s:%d: ReduceMax with calIndex is not modelled", loc.file, loc.line);
    float m = -INFINITY;
    for (int32_t i = 0; i < count; ++i) m = std::max(m, (float)src.Ptr()[i]);
    dst.Ptr()[0] = (T)m;
}

// CompareScalar / Compare (API reference: "CompareScalar" / "Compare", pages
// atlasascendc_api_07_0068 / 07_0066 of CANN 8.5.0): one bit per element in a
// uint8_t mask, element i -> bit i % 8 of byte i / 8. count * sizeof(T) must fill whole
// 256-byte repeats (the rest is not computed); int32_t compares only with CMPMODE::EQ on A2.
enum class CMPMODE { LT, GT, EQ, LE, GE, NE };
template <typename T>
inline bool CmpOne(CMPMODE m, T a, T b)
{
    float x = (float)a, y = (float)b;
    if (std::is_integral<T>::value) { long long p = (long long)a, q = (long long)b; return m == CMPMODE::EQ ? p == q : false; }
    switch (m) {
    case CMPMODE::LT: return x < y;
    case CMPMODE::GT: return x > y;
    case CMPMODE::EQ: return x == y;
    case CMPMODE::LE: return x <= y;
    case CMPMODE::GE: return x >= y;
    default: return x != y;
    }
}
template <typename T, typename U>
inline void CompareCheck(const char *api, CMPMODE mode, uint32_t count, const twin::Loc &loc)
{
    static_assert(std::is_same<U, uint8_t>::value, "Compare: the destination is a uint8_t bit mask");
    static_assert(std::is_same<T, half>::value || std::is_same<T, float>::value || std::is_same<T, int32_t>::value,
                  "Compare: source type must be half, float or int32_t");
    if (std::is_same<T, int32_t>::value && mode != CMPMODE::EQ)
        twin::Die("%s:%d: %s: int32_t sources compare only with CMPMODE::EQ on A2", loc.file, loc.line, api);
    if ((count * sizeof(T)) % 256)
        twin::Die("%s:%d: %s: count %u x %zu bytes is not a whole number of 256-byte repeats", loc.file, loc.line, api,
                  count, sizeof(T));
}
// one compare instruction: bit i of dst = pred(i); reads the sources, writes count / 8 bytes
template <typename T, typename U, typename Pred>
inline void CompareBits(const char *api, const LocalTensor<U> &dst, CMPMODE mode, uint32_t count,
                        std::initializer_list<const LocalTensor<T> *> srcs, Pred pred, const twin::Loc &loc)
{
    CompareCheck<T, U>(api, mode, count, loc);
    detail::Need(dst, count / 8, twin::UB, api, "dst", loc);
    for (auto *src : srcs) detail::Need(*src, count, twin::UB, api, "src", loc);
    uint32_t st = twin::Cur().Issue(twin::P_V);
    for (auto *src : srcs) detail::Touch(*src, count * sizeof(T), twin::P_V, false, st, loc);
    detail::Touch(dst, count / 8, twin::P_V, true, st, loc);
    uint8_t *d = dst.Ptr();
    std::memset(d, 0, count / 8);
    for (uint32_t i = 0; i < count; ++i)
        if (pred(i)) d[i / 8] |= (uint8_t)(1u << (i % 8));
}
template <typename T, typename U>
inline void CompareScalar(const LocalTensor<U> &dst, const LocalTensor<T> &src0, const T src1Scalar, CMPMODE cmpMode,
                          uint32_t count, twin::Loc loc = twin::Loc::Here())
{
    CompareBits<T, U>("CompareScalar", dst, cmpMode, count, {&src0},
                      [&](uint32_t i) { return CmpOne(cmpMode, src0.Ptr()[i], src1Scalar); }, loc);
}
template <typename T, typename U>
inline void Compare(const LocalTensor<U> &dst, const LocalTensor<T> &src0, const LocalTensor<T> &src1, CMPMODE cmpMode,
                    uint32_t count, twin::Loc loc = twin::Loc::Here())
{
    CompareBits<T, U>("Compare", dst, cmpMode, count, {&src0, &src1},
                      [&](uint32_t i) { return CmpOne(cmpMode, src0.Ptr()[i], src1.Ptr()[i]); }, loc);
}

// Select (API reference: "Select"; the vsel intrinsic page cceapi_0039): a set bit of selMask picks src0, a clear bit src1
enum class SELMODE { VSEL_CMPMASK_SPR = 0, VSEL_TENSOR_SCALAR_MODE, VSEL_TENSOR_TENSOR_MODE };
template <typename T, typename U>
inline void Select(const LocalTensor<T> &dst, const LocalTensor<U> &selMask, const LocalTensor<T> &src0, T src1,
                   SELMODE selMode, uint32_t count, twin::Loc loc = twin::Loc::Here())
{
    static_assert(std::is_unsigned<U>::value, "Select: selMask is an unsigned bit mask");
    if (selMode != SELMODE::VSEL_TENSOR_SCALAR_MODE)
        twin::Die("%s:%d: Select with a scalar src1 takes VSEL_TENSOR_SCALAR_MODE", loc.file, loc.line);
    detail::VecDtype<T>("Select", loc, false);
    detail::Need(selMask, (count + 8 * sizeof(U) - 1) / (8 * sizeof(U)), twin::UB, "Select", "selMask", loc);
    detail::VecOp("Select", loc, dst, count, src0);
    detail::Touch(selMask, (count + 7) / 8, twin::P_V, false, twin::Cur().issued[twin::P_V], loc);
    const uint8_t *m = reinterpret_cast<const uint8_t *>(selMask.Ptr());
    for (uint32_t i = 0; i < count; ++i) dst.Ptr()[i] = (m[i / 8] >> (i % 8)) & 1 ? src0.Ptr()[i] : src1;
}

// ---- data movement --------------------------------------------------------------------------
// DataCopyParams / DataCopyExtParams / DataCopyPadExtParams (API reference: "DataCopyPad", "DataCopyExtParams")
struct DataCopyExtParams {
    uint16_t blockCount = 1;
    uint32_t blockLen = 0;          // bytes
    uint32_t srcStride = 0;         // GM side: bytes; UB side: 32-byte blocks
    uint32_t dstStride = 0;
    uint32_t rsv = 0;
};
template <typename T>
struct DataCopyPadExtParams {
    bool isPad = false;
    uint8_t leftPadding = 0, rightPadding = 0;
    T paddingValue = T();
};

// DataCopyPad GM -> UB (API reference: "DataCopyPad"): blockCount rows of blockLen bytes, each
// landing on a 32-byte boundary in UB; with isPad the rest of its 32-byte block gets the value
template <typename T>
inline void DataCopyPad(const LocalTensor<T> &dst, const GlobalTensor<T> &src, const DataCopyExtParams &p,
                        const DataCopyPadExtParams<T> &pad, twin::Loc loc = twin::Loc::Here())
{
    uint32_t rowUb = (p.blockLen + 31) / 32 * 32 + p.dstStride * 32;
    uint64_t ub = p.blockCount ? (uint64_t)(p.blockCount - 1) * rowUb + (p.blockLen + 31) / 32 * 32 : 0;
    if (p.blockLen % sizeof(T)) twin::Die("%s:%d: DataCopyPad: blockLen %u is not whole elements", loc.file, loc.line, p.blockLen);
    detail::Need(dst, ub / sizeof(T), twin::UB, "DataCopyPad", "dst", loc);
    auto &c = twin::Cur();
    uint32_t st = c.Issue(twin::P_MTE2);
    const uint8_t *g = reinterpret_cast<const uint8_t *>(src.base);
    for (uint32_t b = 0; b < p.blockCount; ++b) {
        uint64_t go = (uint64_t)b * (p.blockLen + p.srcStride);
        src.Range(go / sizeof(T), p.blockLen / sizeof(T), loc);
        twin::GmAccess(g + go, p.blockLen, twin::P_MTE2, false, st, loc);
        detail::Touch(dst, (p.blockLen + 31) / 32 * 32, twin::P_MTE2, true, st, loc, (uint64_t)b * rowUb);
        uint8_t *u = reinterpret_cast<uint8_t *>(dst.Ptr()) + (uint64_t)b * rowUb;
        std::memcpy(u, g + go, p.blockLen);
        if (pad.isPad)
            for (uint32_t e = p.blockLen / sizeof(T); e < (p.blockLen + 31) / 32 * 32 / sizeof(T); ++e)
                reinterpret_cast<T *>(u)[e] = pad.paddingValue;
    }
}
// DataCopyPad UB -> GM: exactly blockLen bytes per row reach GM
template <typename T>
inline void DataCopyPad(const GlobalTensor<T> &dst, const LocalTensor<T> &src, const DataCopyExtParams &p,
                        twin::Loc loc = twin::Loc::Here())
{
    uint32_t rowUb = (p.blockLen + 31) / 32 * 32 + p.srcStride * 32;
    uint64_t ub = p.blockCount ? (uint64_t)(p.blockCount - 1) * rowUb + p.blockLen : 0;
    if (p.blockLen % sizeof(T)) twin::Die("%s:%d: DataCopyPad: blockLen %u is not whole elements", loc.file, loc.line, p.blockLen);
    detail::Need(src, ub / sizeof(T), twin::UB, "DataCopyPad", "src", loc);
    auto &c = twin::Cur();
    uint32_t st = c.Issue(twin::P_MTE3);
    uint8_t *g = reinterpret_cast<uint8_t *>(dst.base);
    for (uint32_t b = 0; b < p.blockCount; ++b) {
        uint64_t go = (uint64_t)b * (p.blockLen + p.dstStride);
        dst.Range(go / sizeof(T), p.blockLen / sizeof(T), loc);
        detail::Touch(src, p.blockLen, twin::P_MTE3, false, st, loc, (uint64_t)b * rowUb);
        twin::GmAccess(g + go, p.blockLen, twin::P_MTE3, true, st, loc);
        std::memcpy(g + go, reinterpret_cast<const uint8_t *>(src.Ptr()) + (uint64_t)b * rowUb, p.blockLen);
    }
}

// DataCopy UB -> UB (API reference: "DataCopy", local-to-local): on the vector unit, whole 32-byte blocks
template <typename T>
inline void DataCopy(const LocalTensor<T> &dst, const LocalTensor<T> &src, const uint32_t count,
                     twin::Loc loc = twin::Loc::Here())
{
    if ((count * sizeof(T)) % 32) twin::Die("%s:%d: DataCopy: %u elements are not whole 32-byte blocks", loc.file, loc.line, count);
    detail::VecOp("DataCopy", loc, dst, count, src);
    std::memmove(dst.Ptr(), src.Ptr(), count * sizeof(T));
}

// Nd2NzParams + DataCopy GM -> L1 (API reference: "DataCopy", 随路格式转换 ND2NZ): ND rows become
// NZ fractal columns of C0 = 32 bytes; strides: srcDValue elements per source row,
// dstNzC0Stride / dstNzNStride in C0 blocks, the matrix strides in elements.
struct Nd2NzParams {
    uint16_t ndNum = 1, nValue = 0, dValue = 0, srcNdMatrixStride = 0, srcDValue = 0, dstNzC0Stride = 0,
             dstNzNStride = 1, dstNzMatrixStride = 0;
};
template <typename T>
inline void DataCopy(const LocalTensor<T> &dst, const GlobalTensor<T> &src, const Nd2NzParams &p,
                     twin::Loc loc = twin::Loc::Here())
{
    constexpr uint32_t C0 = 32 / sizeof(T);
    uint64_t last = (uint64_t)(p.ndNum ? p.ndNum - 1 : 0) * p.dstNzMatrixStride +
                    (uint64_t)((p.dValue + C0 - 1) / C0 - 1) * p.dstNzC0Stride * C0 +
                    (uint64_t)(p.nValue ? p.nValue - 1 : 0) * p.dstNzNStride * C0 + C0;
    if (p.nValue == 0 || p.dValue == 0 || p.ndNum == 0) return;
    detail::Need(dst, last, twin::L1, "DataCopy(Nd2Nz)", "dst", loc);
    uint32_t st = twin::Cur().Issue(twin::P_MTE2);
    for (uint32_t n = 0; n < p.ndNum; ++n)
        for (uint32_t r = 0; r < p.nValue; ++r) {
            uint64_t s0 = (uint64_t)n * p.srcNdMatrixStride + (uint64_t)r * p.srcDValue;
            src.Range(s0, p.dValue, loc);
            twin::GmAccess(src.base + s0, p.dValue * sizeof(T), twin::P_MTE2, false, st, loc);
            for (uint32_t c = 0; c < p.dValue; c += C0) {
                uint64_t d0 = (uint64_t)n * p.dstNzMatrixStride + (uint64_t)(c / C0) * p.dstNzC0Stride * C0 +
                              (uint64_t)r * p.dstNzNStride * C0;
                uint32_t k = std::min<uint32_t>(C0, p.dValue - c);
                detail::Touch(dst, k * sizeof(T), twin::P_MTE2, true, st, loc, d0 * sizeof(T));
                std::memcpy(dst.Ptr() + d0, src.base + s0 + c, k * sizeof(T));
            }
        }
}

// InitConstValue (API reference: "InitConstValue"): fill L1/L0A/L0B blocks of 32 bytes (modelled on MTE2)
template <typename T>
struct InitConstValueParams {
    uint16_t repeatTimes = 0, blockNum = 0, dstGap = 0;
    T initValue = T();
    InitConstValueParams() = default;
    InitConstValueParams(uint16_t r, uint16_t b, uint16_t g, T v) : repeatTimes(r), blockNum(b), dstGap(g), initValue(v) {}
};
template <typename T, typename U>
inline void InitConstValue(const LocalTensor<T> &dst, const InitConstValueParams<U> &p, twin::Loc loc = twin::Loc::Here())
{
    uint64_t bytes = (uint64_t)p.repeatTimes * (p.blockNum + p.dstGap) * 32;
    if (dst.space == twin::UB) twin::Die("%s:%d: InitConstValue takes an L1/L0A/L0B tensor", loc.file, loc.line);
    detail::Need(dst, bytes / sizeof(T), dst.space, "InitConstValue", "dst", loc);
    uint32_t st = twin::Cur().Issue(twin::P_MTE2);
    detail::Touch(dst, bytes, twin::P_MTE2, true, st, loc);
    for (uint64_t i = 0; i < bytes / sizeof(T); ++i) dst.Ptr()[i] = (T)(float)p.initValue;
}

// LoadData 2D L1 -> L0A/L0B (API reference: "LoadData", 2D): repeatTimes fractals of 512 bytes,
// the i-th from fractal startIndex + i * srcStride, to consecutive fractals of dst; with
// ifTranspose each 16x16 fractal is transposed on the way
struct LoadData2DParams {
    uint16_t startIndex = 0;
    uint8_t repeatTimes = 0;
    uint16_t srcStride = 0;
    uint8_t sid = 0;
    uint16_t dstGap = 0;
    bool ifTranspose = false;
    uint8_t addrMode = 0;
};
template <typename T>
inline void LoadData(const LocalTensor<T> &dst, const LocalTensor<T> &src, const LoadData2DParams &p,
                     twin::Loc loc = twin::Loc::Here())
{
    static_assert(sizeof(T) == 2, "the twin's LoadData models 16-bit fractals (16 x 16)");
    if (dst.space != twin::L0A && dst.space != twin::L0B) twin::Die("%s:%d: LoadData: dst must be L0A or L0B", loc.file, loc.line);
    detail::Need(dst, (uint64_t)p.repeatTimes * (1 + p.dstGap) * 256, dst.space, "LoadData", "dst", loc, 512);
    detail::Need(src, (uint64_t)(p.startIndex + (p.repeatTimes ? p.repeatTimes - 1 : 0) * p.srcStride + 1) * 256,
                 twin::L1, "LoadData", "src", loc);
    uint32_t st = twin::Cur().Issue(twin::P_MTE1);
    for (uint32_t i = 0; i < p.repeatTimes; ++i) {
        uint64_t f = p.startIndex + (uint64_t)i * p.srcStride;
        detail::Touch(src, 512, twin::P_MTE1, false, st, loc, f * 512);
        detail::Touch(dst, 512, twin::P_MTE1, true, st, loc, (uint64_t)i * (1 + p.dstGap) * 512);
        const T *s = src.Ptr() + f * 256;
        T *d = dst.Ptr() + (uint64_t)i * (1 + p.dstGap) * 256;
        for (int r = 0; r < 16; ++r)
            for (int c = 0; c < 16; ++c) d[r * 16 + c] = p.ifTranspose ? s[c * 16 + r] : s[r * 16 + c];
    }
}

// Mmad (API reference: "Mmad"): C (L0C, f32 NZ) = or += A (L0A zZ) x B (L0B nZ), whole
// 16-element fractals; f32 accumulation
struct MmadParams {
    uint16_t m = 0, n = 0, k = 0;
    bool isBias = false;
    int32_t fmOffset = 0;
    bool enSsparse = false, enWinogradA = false, enWinogradB = false;
    uint8_t unitFlag = 0;
    bool kDirectionAlign = false, cmatrixSource = false, cmatrixInitVal = true;
};
template <typename C, typename A, typename B>
inline void Mmad(const LocalTensor<C> &dst, const LocalTensor<A> &fm, const LocalTensor<B> &filter, const MmadParams &p,
                 twin::Loc loc = twin::Loc::Here())
{
    static_assert(std::is_same<C, float>::value, "Mmad: the twin models f32 accumulation in L0C");
    static_assert(std::is_same<A, B>::value && sizeof(A) == 2, "Mmad: half x half or bf16 x bf16 operands");
    uint32_t M = (p.m + 15) / 16 * 16, N = (p.n + 15) / 16 * 16, K = (p.k + 15) / 16 * 16;
    detail::Need(dst, (uint64_t)M * N, twin::L0C, "Mmad", "dst", loc, 64);
    detail::Need(fm, (uint64_t)M * K, twin::L0A, "Mmad", "fm (A)", loc, 512);
    detail::Need(filter, (uint64_t)K * N, twin::L0B, "Mmad", "filter (B)", loc, 512);
    uint32_t st = twin::Cur().Issue(twin::P_M);
    detail::Touch(fm, (uint64_t)M * K * 2, twin::P_M, false, st, loc);
    detail::Touch(filter, (uint64_t)K * N * 2, twin::P_M, false, st, loc);
    if (!p.cmatrixInitVal) detail::Touch(dst, (uint64_t)M * N * 4, twin::P_M, false, st, loc);
    detail::Touch(dst, (uint64_t)M * N * 4, twin::P_M, true, st, loc);
    const A *a = fm.Ptr();
    const B *b = filter.Ptr();
    C *c = dst.Ptr();
    for (uint32_t m = 0; m < M; ++m)
        for (uint32_t n = 0; n < N; ++n) {
            float s = 0;
            for (uint32_t k = 0; k < K; ++k)
                s += (float)a[((m / 16) * (K / 16) + k / 16) * 256 + (m % 16) * 16 + k % 16] *
                     (float)b[((k / 16) * (N / 16) + n / 16) * 256 + (n % 16) * 16 + k % 16];
            float &o = c[(n / 16) * M * 16 + m * 16 + n % 16];
            o = p.cmatrixInitVal ? s : o + s;
        }
}

// Fixpipe L0C -> GM (API reference: "Fixpipe"): NZ -> ND (CFG_ROW_MAJOR), mSize x nSize, with
// the quantPre cast; srcStride = rows between the NZ column blocks of L0C, dstStride = ND row
// stride in elements
enum class QuantMode_t { NoQuant, F322F16, F322BF16 };
struct FixpipeParamsV220 {
    uint16_t nSize = 0, mSize = 0, srcStride = 0;
    uint32_t dstStride = 0;
    QuantMode_t quantPre = QuantMode_t::NoQuant;
    uint64_t deqScalar = 0;
    uint16_t ndNum = 1, srcNdStride = 0, dstNdStride = 0;
    bool reluEn = false;
    uint8_t unitFlag = 0;
};
enum class CO2Layout { NZ, ROW_MAJOR };
struct FixpipeConfig { CO2Layout format; };
constexpr FixpipeConfig CFG_NZ = {CO2Layout::NZ};
constexpr FixpipeConfig CFG_ROW_MAJOR = {CO2Layout::ROW_MAJOR};
template <typename D, typename S, const FixpipeConfig &config>
inline void Fixpipe(const GlobalTensor<D> &dst, const LocalTensor<S> &src, const FixpipeParamsV220 &p,
                    twin::Loc loc = twin::Loc::Here())
{
    static_assert(std::is_same<S, float>::value, "Fixpipe: the twin models f32 L0C sources");
    static_assert(config.format == CO2Layout::ROW_MAJOR, "Fixpipe: the twin models NZ -> ND (CFG_ROW_MAJOR)");
    bool ok = (p.quantPre == QuantMode_t::NoQuant && std::is_same<D, float>::value) ||
              (p.quantPre == QuantMode_t::F322F16 && std::is_same<D, half>::value) ||
              (p.quantPre == QuantMode_t::F322BF16 && std::is_same<D, bfloat16_t>::value);
    if (!ok) twin::Die("%s:%d: Fixpipe: quantPre does not produce the destination type", loc.file, loc.line);
    if (p.ndNum != 1) twin::Die("%s:%d: Fixpipe: the twin models ndNum 1", loc.file, loc.line);
    if (p.srcStride < p.mSize || p.srcStride % 16)
        twin::Die("%s:%d: Fixpipe: srcStride %u must be a multiple of 16 covering mSize %u", loc.file, loc.line,
                  p.srcStride, p.mSize);
    uint32_t N = (p.nSize + 15) / 16 * 16;
    detail::Need(src, (uint64_t)p.srcStride * N, twin::L0C, "Fixpipe", "src", loc, 64);
    uint32_t st = twin::Cur().Issue(twin::P_FIX);
    detail::Touch(src, (uint64_t)p.srcStride * N * 4, twin::P_FIX, false, st, loc);
    for (uint32_t m = 0; m < p.mSize; ++m) {
        dst.Range((uint64_t)m * p.dstStride, p.nSize, loc);
        twin::GmAccess(dst.base + (uint64_t)m * p.dstStride, p.nSize * sizeof(D), twin::P_FIX, true, st, loc);
        for (uint32_t n = 0; n < p.nSize; ++n)
            dst.base[(uint64_t)m * p.dstStride + n] = (D)src.Ptr()[(n / 16) * p.srcStride * 16 + m * 16 + n % 16];
    }
}

}  // namespace AscendC
