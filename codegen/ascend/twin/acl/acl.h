// Host runtime (AscendCL) subset the emitted launchers call, for the twin: device memory is
// host memory registered with the twin (filled with 0xFF so a kernel reading what nobody wrote
// sees NaN), kernels run on CPU threads when launched. Names and enum values from the AscendCL
// API reference ("aclrtMalloc", "aclrtMemcpy", "aclrtGetDeviceInfo" / aclrtDevAttr); only the
// device attributes that exist in every CANN release are declared.
#pragma once
#include <cstddef>
#include <cstdint>
#include "../twin_core.h"

typedef int aclError;
typedef void *aclrtStream;
constexpr aclError ACL_SUCCESS = 0;
constexpr aclError ACL_ERROR_INVALID_PARAM = 100000;
typedef enum aclrtMemMallocPolicy { ACL_MEM_MALLOC_HUGE_FIRST, ACL_MEM_MALLOC_HUGE_ONLY, ACL_MEM_MALLOC_NORMAL_ONLY } aclrtMemMallocPolicy;
typedef enum aclrtMemcpyKind { ACL_MEMCPY_HOST_TO_HOST, ACL_MEMCPY_HOST_TO_DEVICE, ACL_MEMCPY_DEVICE_TO_HOST, ACL_MEMCPY_DEVICE_TO_DEVICE } aclrtMemcpyKind;
typedef enum aclrtDevAttr { ACL_DEV_ATTR_AICPU_CORE_NUM = 1, ACL_DEV_ATTR_AICORE_CORE_NUM = 101, ACL_DEV_ATTR_VECTOR_CORE_NUM = 201 } aclrtDevAttr;

inline aclError aclInit(const char *) { return ACL_SUCCESS; }
inline aclError aclFinalize() { return ACL_SUCCESS; }
inline aclError aclrtSetDevice(int32_t) { return ACL_SUCCESS; }
inline aclError aclrtResetDevice(int32_t) { return ACL_SUCCESS; }
inline aclError aclrtCreateStream(aclrtStream *s) { *s = (aclrtStream)1; return ACL_SUCCESS; }
inline aclError aclrtDestroyStream(aclrtStream) { return ACL_SUCCESS; }
inline aclError aclrtSynchronizeStream(aclrtStream) { return ACL_SUCCESS; }
inline aclError aclrtMalloc(void **p, size_t n, aclrtMemMallocPolicy)
{
    uint8_t *m = static_cast<uint8_t *>(std::malloc(n ? n : 1));
    std::memset(m, 0xFF, n);
    auto &g = twin::GmState();
    std::lock_guard<std::mutex> lk(g.mu);
    g.regions[(uintptr_t)m] = twin::GmRegion{m, n, std::vector<twin::Shadow>(n / 32 + 2)};
    *p = m;
    return ACL_SUCCESS;
}
inline aclError aclrtFree(void *p)
{
    auto &g = twin::GmState();
    std::lock_guard<std::mutex> lk(g.mu);
    if (!g.regions.erase((uintptr_t)p)) return ACL_ERROR_INVALID_PARAM;
    std::free(p);
    return ACL_SUCCESS;
}
inline aclError aclrtMemcpy(void *dst, size_t dstMax, const void *src, size_t n, aclrtMemcpyKind)
{
    if (n > dstMax) return ACL_ERROR_INVALID_PARAM;
    std::memcpy(dst, src, n);
    return ACL_SUCCESS;
}
// 910B2: 24 AI cores (AIC), 48 vector cores; TILEC_TWIN_CORES overrides the AI core count
inline aclError aclrtGetDeviceInfo(uint32_t, aclrtDevAttr attr, int64_t *v)
{
    const char *e = std::getenv("TILEC_TWIN_CORES");
    int64_t cores = e ? std::atoll(e) : 24;
    if (attr == ACL_DEV_ATTR_AICORE_CORE_NUM) *v = cores;
    else if (attr == ACL_DEV_ATTR_VECTOR_CORE_NUM) *v = 2 * cores;
    else return ACL_ERROR_INVALID_PARAM;
    return ACL_SUCCESS;
}
