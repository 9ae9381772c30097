// Device memory (host memory the emulator tracks), streams and events.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>

#include "runtime.hpp"

struct e3emu_stream_st {
    int unused;
};
struct e3emu_event_st {
    bool recorded = false;
    std::chrono::steady_clock::time_point when;
};

namespace e3emu {
namespace {

std::mutex registry_mutex;
std::map<std::uintptr_t, std::size_t> allocations; // base -> bytes
std::set<e3emu_stream> streams;
std::set<e3emu_event> events;

// cudaMalloc aligns to at least 256 bytes; vectorised kernels rely on it.
constexpr std::size_t allocation_alignment = 256;

std::string hex(std::uintptr_t value) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "0x%llx", static_cast<unsigned long long>(value));
    return buffer;
}

// True when [ptr, ptr + bytes) lies inside one live allocation.
bool inside_allocation(std::uintptr_t ptr, std::size_t bytes) {
    std::lock_guard lock(registry_mutex);
    auto after = allocations.upper_bound(ptr);
    if (after == allocations.begin()) return false;
    auto holder = std::prev(after);
    return ptr - holder->first <= holder->second && bytes <= holder->second - (ptr - holder->first);
}

e3emu_result check_device_range(const char* call, const char* what, e3emu_deviceptr ptr, std::size_t bytes) {
    if (!pool()) return fail(E3EMU_ERROR_NOT_INITIALIZED, std::string(call) + ": call e3emu_init first");
    if (!inside_allocation(static_cast<std::uintptr_t>(ptr), bytes))
        return fail(E3EMU_ERROR_INVALID_VALUE, std::string(call) + ": " + what + " range [" + hex(ptr) + ", +" +
                                                   std::to_string(bytes) + ") is not inside one allocation");
    return E3EMU_SUCCESS;
}

bool valid_stream(e3emu_stream stream) {
    std::lock_guard lock(registry_mutex);
    return stream == nullptr || streams.count(stream) != 0;
}

bool valid_event(e3emu_event event) {
    std::lock_guard lock(registry_mutex);
    return events.count(event) != 0;
}

} // namespace
} // namespace e3emu

using namespace e3emu;

extern "C" {

e3emu_result e3emu_mem_alloc(e3emu_deviceptr* ptr, size_t bytes) {
    if (!pool()) return fail(E3EMU_ERROR_NOT_INITIALIZED, "e3emu_mem_alloc: call e3emu_init first");
    if (!ptr || bytes == 0) return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_mem_alloc: null pointer or 0 bytes");
    void* memory = nullptr;
    // Exactly `bytes` long, so AddressSanitizer reports the first byte past the end.
    if (posix_memalign(&memory, allocation_alignment, bytes) != 0)
        return fail(E3EMU_ERROR_OUT_OF_MEMORY, "e3emu_mem_alloc: cannot allocate " + std::to_string(bytes) + " bytes");
    // cuMemAlloc's memory is undefined; fresh pages from the host are zeros, which is just what a kernel that adds
    // into a buffer nobody cleared would want. All-ones bytes (NaN in fp32 and bf16, -1 in integers) make that show.
    std::memset(memory, 0xff, bytes);
    std::lock_guard lock(registry_mutex);
    allocations[reinterpret_cast<std::uintptr_t>(memory)] = bytes;
    *ptr = reinterpret_cast<std::uintptr_t>(memory);
    return succeed();
}

e3emu_result e3emu_mem_free(e3emu_deviceptr ptr) {
    if (!pool()) return fail(E3EMU_ERROR_NOT_INITIALIZED, "e3emu_mem_free: call e3emu_init first");
    std::lock_guard lock(registry_mutex);
    auto found = allocations.find(static_cast<std::uintptr_t>(ptr));
    if (found == allocations.end())
        return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_mem_free: " + hex(ptr) + " is not the start of an allocation");
    std::free(reinterpret_cast<void*>(found->first));
    allocations.erase(found);
    return succeed();
}

e3emu_result e3emu_range_check(e3emu_deviceptr ptr, size_t bytes) {
    return check_device_range("e3emu_range_check", "device", ptr, bytes);
}

e3emu_result e3emu_memcpy_htod(e3emu_deviceptr dst, const void* src, size_t bytes) {
    if (auto r = check_device_range("e3emu_memcpy_htod", "destination", dst, bytes)) return r;
    if (!src && bytes) return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_memcpy_htod: null source");
    if (bytes) std::memcpy(reinterpret_cast<void*>(dst), src, bytes);
    return succeed();
}

e3emu_result e3emu_memcpy_dtoh(void* dst, e3emu_deviceptr src, size_t bytes) {
    if (auto r = check_device_range("e3emu_memcpy_dtoh", "source", src, bytes)) return r;
    if (!dst && bytes) return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_memcpy_dtoh: null destination");
    if (bytes) std::memcpy(dst, reinterpret_cast<const void*>(src), bytes);
    return succeed();
}

e3emu_result e3emu_memcpy_dtod(e3emu_deviceptr dst, e3emu_deviceptr src, size_t bytes) {
    if (auto r = check_device_range("e3emu_memcpy_dtod", "destination", dst, bytes)) return r;
    if (auto r = check_device_range("e3emu_memcpy_dtod", "source", src, bytes)) return r;
    if (bytes) std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), bytes);
    return succeed();
}

e3emu_result e3emu_memset_d8(e3emu_deviceptr dst, unsigned char value, size_t count) {
    if (auto r = check_device_range("e3emu_memset_d8", "destination", dst, count)) return r;
    if (count) std::memset(reinterpret_cast<void*>(dst), value, count);
    return succeed();
}

e3emu_result e3emu_memset_d32(e3emu_deviceptr dst, unsigned value, size_t count) {
    if (count > SIZE_MAX / 4) return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_memset_d32: count overflows");
    if (auto r = check_device_range("e3emu_memset_d32", "destination", dst, count * 4)) return r;
    if (dst % 4 != 0) return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_memset_d32: destination " + hex(dst) + " is not 4-byte aligned");
    auto* words = reinterpret_cast<unsigned*>(dst);
    for (size_t i = 0; i < count; ++i) words[i] = value;
    return succeed();
}

e3emu_result e3emu_stream_create(e3emu_stream* stream) {
    if (!pool()) return fail(E3EMU_ERROR_NOT_INITIALIZED, "e3emu_stream_create: call e3emu_init first");
    if (!stream) return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_stream_create: null output");
    auto* created = new e3emu_stream_st{};
    std::lock_guard lock(registry_mutex);
    streams.insert(created);
    *stream = created;
    return succeed();
}

e3emu_result e3emu_stream_destroy(e3emu_stream stream) {
    std::lock_guard lock(registry_mutex);
    if (stream == nullptr || !streams.erase(stream))
        return fail(E3EMU_ERROR_INVALID_HANDLE, "e3emu_stream_destroy: not a live stream");
    delete stream;
    return succeed();
}

e3emu_result e3emu_stream_synchronize(e3emu_stream stream) {
    if (!valid_stream(stream)) return fail(E3EMU_ERROR_INVALID_HANDLE, "e3emu_stream_synchronize: not a live stream");
    return succeed(); // every operation completed when it was submitted
}

e3emu_result e3emu_event_create(e3emu_event* event) {
    if (!pool()) return fail(E3EMU_ERROR_NOT_INITIALIZED, "e3emu_event_create: call e3emu_init first");
    if (!event) return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_event_create: null output");
    auto* created = new e3emu_event_st{};
    std::lock_guard lock(registry_mutex);
    events.insert(created);
    *event = created;
    return succeed();
}

e3emu_result e3emu_event_destroy(e3emu_event event) {
    std::lock_guard lock(registry_mutex);
    if (!events.erase(event)) return fail(E3EMU_ERROR_INVALID_HANDLE, "e3emu_event_destroy: not a live event");
    delete event;
    return succeed();
}

e3emu_result e3emu_event_record(e3emu_event event, e3emu_stream stream) {
    if (!valid_event(event)) return fail(E3EMU_ERROR_INVALID_HANDLE, "e3emu_event_record: not a live event");
    if (!valid_stream(stream)) return fail(E3EMU_ERROR_INVALID_HANDLE, "e3emu_event_record: not a live stream");
    event->when = std::chrono::steady_clock::now();
    event->recorded = true;
    return succeed();
}

e3emu_result e3emu_event_synchronize(e3emu_event event) {
    if (!valid_event(event)) return fail(E3EMU_ERROR_INVALID_HANDLE, "e3emu_event_synchronize: not a live event");
    return succeed();
}

e3emu_result e3emu_event_elapsed_time(float* milliseconds, e3emu_event start, e3emu_event end) {
    if (!milliseconds) return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_event_elapsed_time: null output");
    if (!valid_event(start) || !valid_event(end))
        return fail(E3EMU_ERROR_INVALID_HANDLE, "e3emu_event_elapsed_time: not a live event");
    if (!start->recorded || !end->recorded)
        return fail(E3EMU_ERROR_INVALID_HANDLE, "e3emu_event_elapsed_time: an event was never recorded");
    *milliseconds = std::chrono::duration<float, std::milli>(end->when - start->when).count();
    return succeed();
}

} // extern "C"
