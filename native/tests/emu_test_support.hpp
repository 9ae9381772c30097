// Helpers shared by the native emulator tests: device buffers with RAII and checked C ABI calls.
#pragma once
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "e3emu/e3emu.h"

#define E3EMU_CHECK(call)                                                                         \
    do {                                                                                          \
        const e3emu_result e3emu_check_result = (call);                                           \
        ASSERT_EQ(e3emu_check_result, E3EMU_SUCCESS) << #call << ": " << e3emu_last_error();      \
    } while (0)

// A device allocation holding `count` elements of T, freed on scope exit.
template <class T>
class DeviceBuffer {
public:
    explicit DeviceBuffer(std::size_t count) : count_(count) {
        if (e3emu_mem_alloc(&ptr_, count * sizeof(T)) != E3EMU_SUCCESS) throw std::runtime_error(e3emu_last_error());
    }
    explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
    ~DeviceBuffer() { e3emu_mem_free(ptr_); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    void upload(const std::vector<T>& host) {
        if (e3emu_memcpy_htod(ptr_, host.data(), host.size() * sizeof(T)) != E3EMU_SUCCESS)
            throw std::runtime_error(e3emu_last_error());
    }
    std::vector<T> download() const {
        std::vector<T> host(count_);
        if (e3emu_memcpy_dtoh(host.data(), ptr_, count_ * sizeof(T)) != E3EMU_SUCCESS)
            throw std::runtime_error(e3emu_last_error());
        return host;
    }
    void fill_bytes(unsigned char value) {
        if (e3emu_memset_d8(ptr_, value, count_ * sizeof(T)) != E3EMU_SUCCESS) throw std::runtime_error(e3emu_last_error());
    }
    // The kernel parameter value (a device pointer) and its address for the params array.
    T* device() { device_view_ = reinterpret_cast<T*>(ptr_); return device_view_; }
    void* param() { device(); return &device_view_; }
    e3emu_deviceptr handle() const { return ptr_; }
    std::size_t size() const { return count_; }

private:
    e3emu_deviceptr ptr_ = 0;
    std::size_t count_;
    T* device_view_ = nullptr;
};

// Initialises the emulator and resolves kernels of the test library.
class EmuTest : public ::testing::Test {
protected:
    static e3emu_function kernel(const char* module_name, const char* kernel_name) {
        e3emu_module module = nullptr;
        e3emu_function function = nullptr;
        if (e3emu_init(0) != E3EMU_SUCCESS || e3emu_module_load(&module, module_name) != E3EMU_SUCCESS ||
            e3emu_module_get_function(&function, module, kernel_name) != E3EMU_SUCCESS)
            throw std::runtime_error(e3emu_last_error());
        return function;
    }
    void SetUp() override { E3EMU_CHECK(e3emu_init(0)); }
};
