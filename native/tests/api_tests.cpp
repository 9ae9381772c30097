// The driver-like C ABI: lookups, argument checks, memory bounds, events.
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "emu_test_support.hpp"

namespace {

class Api : public EmuTest {};

TEST_F(Api, UnknownModuleAndFunctionAreNamedInTheError) {
    e3emu_module module = nullptr;
    EXPECT_EQ(e3emu_module_load(&module, "no_such_module"), E3EMU_ERROR_NOT_FOUND);
    EXPECT_NE(std::string(e3emu_last_error()).find("no_such_module"), std::string::npos);
    E3EMU_CHECK(e3emu_module_load(&module, "reduce"));
    e3emu_function function = nullptr;
    EXPECT_EQ(e3emu_module_get_function(&function, module, "e3t_nope"), E3EMU_ERROR_NOT_FOUND);
    EXPECT_NE(std::string(e3emu_last_error()).find("e3t_nope"), std::string::npos);
    EXPECT_STREQ(e3emu_error_name(E3EMU_ERROR_NOT_FOUND), "CUDA_ERROR_NOT_FOUND");
}

TEST_F(Api, ParamCountComesFromTheKernelSignature) {
    int count = -1;
    E3EMU_CHECK(e3emu_function_param_count(kernel("atomics", "e3t_atomics"), &count));
    EXPECT_EQ(count, 9);
    E3EMU_CHECK(e3emu_function_param_count(kernel("transpose", "e3t_transpose"), &count));
    EXPECT_EQ(count, 4);
}

TEST_F(Api, InvalidLaunchShapesAreRejected) {
    DeviceBuffer<float> x(1), y(1);
    int n = 1;
    void* params[] = {x.param(), y.param(), &n};
    e3emu_function f = kernel("reduce", "e3t_block_reduce_sum");
    EXPECT_EQ(e3emu_launch(f, 1, 1, 1, 1025, 1, 1, 0, nullptr, params), E3EMU_ERROR_INVALID_VALUE);
    EXPECT_NE(std::string(e3emu_last_error()).find("e3t_block_reduce_sum"), std::string::npos);
    EXPECT_EQ(e3emu_launch(f, 0, 1, 1, 32, 1, 1, 0, nullptr, params), E3EMU_ERROR_INVALID_VALUE);
    EXPECT_EQ(e3emu_launch(f, 1, 1, 1, 32, 1, 1, 0, nullptr, nullptr), E3EMU_ERROR_INVALID_VALUE);
    EXPECT_EQ(e3emu_launch(nullptr, 1, 1, 1, 32, 1, 1, 0, nullptr, params), E3EMU_ERROR_INVALID_HANDLE);
}

TEST_F(Api, CopiesOutsideAnAllocationAreRejected) {
    DeviceBuffer<float> x(8);
    std::vector<float> host(9);
    EXPECT_EQ(e3emu_memcpy_htod(x.handle(), host.data(), 9 * sizeof(float)), E3EMU_ERROR_INVALID_VALUE);
    EXPECT_EQ(e3emu_memcpy_dtoh(host.data(), x.handle() + 4, 8 * sizeof(float)), E3EMU_ERROR_INVALID_VALUE);
    E3EMU_CHECK(e3emu_memcpy_dtoh(host.data(), x.handle() + 4, 7 * sizeof(float)));
    EXPECT_EQ(e3emu_mem_free(x.handle() + 4), E3EMU_ERROR_INVALID_VALUE);
}

TEST_F(Api, MemsetAndDeviceToDeviceCopy) {
    DeviceBuffer<unsigned> a(100), b(100);
    E3EMU_CHECK(e3emu_memset_d32(a.handle(), 0xdeadbeefu, 100));
    E3EMU_CHECK(e3emu_memcpy_dtod(b.handle(), a.handle(), 100 * sizeof(unsigned)));
    for (unsigned v : b.download()) EXPECT_EQ(v, 0xdeadbeefu);
}

TEST_F(Api, EventsMeasureElapsedWallTime) {
    e3emu_stream stream = nullptr;
    e3emu_event start = nullptr, end = nullptr;
    E3EMU_CHECK(e3emu_stream_create(&stream));
    E3EMU_CHECK(e3emu_event_create(&start));
    E3EMU_CHECK(e3emu_event_create(&end));
    float ms = 0;
    EXPECT_EQ(e3emu_event_elapsed_time(&ms, start, end), E3EMU_ERROR_INVALID_HANDLE); // never recorded
    E3EMU_CHECK(e3emu_event_record(start, stream));
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    E3EMU_CHECK(e3emu_event_record(end, stream));
    E3EMU_CHECK(e3emu_stream_synchronize(stream));
    E3EMU_CHECK(e3emu_event_elapsed_time(&ms, start, end));
    EXPECT_GE(ms, 30.0f);
    EXPECT_LT(ms, 30000.0f);
    E3EMU_CHECK(e3emu_event_destroy(start));
    E3EMU_CHECK(e3emu_event_destroy(end));
    E3EMU_CHECK(e3emu_stream_destroy(stream));
    EXPECT_EQ(e3emu_stream_destroy(stream), E3EMU_ERROR_INVALID_HANDLE);
}

// Fresh device memory reads as all-ones bytes, not the zeros a new host page holds: on a GPU it is undefined, so a
// kernel that accumulates into a buffer nobody cleared must show NaN here rather than a right-looking sum.
TEST_F(Api, FreshAllocationsAreAllOnesBytes) {
    DeviceBuffer<float> floats(3 << 20); // large enough to come from fresh pages
    for (float v : floats.download()) ASSERT_TRUE(std::isnan(v));
    DeviceBuffer<int> ints(17);
    for (int v : ints.download()) ASSERT_EQ(v, -1);
}

// E3EMU_THREAD_ORDER is read once, at e3emu_init; a death test's child process starts with a fresh runtime.
int init_with_thread_order(const char* value) {
    setenv("E3EMU_THREAD_ORDER", value, 1);
    const e3emu_result result = e3emu_init(0);
    if (result != E3EMU_SUCCESS) return std::strstr(e3emu_last_error(), value) != nullptr ? 10 : 11;
    return e3emu_thread_order_in_use() == E3EMU_THREAD_ORDER_REVERSE ? 20 : 21;
}

TEST(ThreadOrderVariable, IsReadAtInitAndAnUnknownValueIsNamed) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(std::exit(init_with_thread_order("reverse")), ::testing::ExitedWithCode(20), "");
    EXPECT_EXIT(std::exit(init_with_thread_order("forward")), ::testing::ExitedWithCode(21), "");
    EXPECT_EXIT(std::exit(init_with_thread_order("sideways")), ::testing::ExitedWithCode(10), "");
}

} // namespace
