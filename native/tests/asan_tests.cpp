// Only in the AddressSanitizer build (native/build-asan): an out-of-bounds kernel store and a misaligned vector load,
// both faults on a GPU, must be caught.
#include "emu_test_support.hpp"

#if defined(__SANITIZE_ADDRESS__)
namespace {

void launch_out_of_bounds() {
    e3emu_init(0);
    e3emu_module module = nullptr;
    e3emu_function function = nullptr;
    e3emu_module_load(&module, "faults");
    e3emu_module_get_function(&function, module, "e3t_out_of_bounds");
    e3emu_deviceptr x = 0;
    e3emu_mem_alloc(&x, 16 * sizeof(float));
    float* device = reinterpret_cast<float*>(x);
    int n = 16;
    void* params[] = {&device, &n};
    e3emu_launch(function, 1, 1, 1, 32, 1, 1, 0, nullptr, params);
}

TEST(AddressSanitizer, OutOfBoundsKernelStoreIsCaught) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(launch_out_of_bounds(), "heap-buffer-overflow");
}

void launch_misaligned_vector_load() {
    e3emu_init(0);
    e3emu_module module = nullptr;
    e3emu_function function = nullptr;
    e3emu_module_load(&module, "faults");
    e3emu_module_get_function(&function, module, "e3t_misaligned_vector_load");
    e3emu_deviceptr x = 0;
    e3emu_mem_alloc(&x, 16 * sizeof(float));
    float* device = reinterpret_cast<float*>(x);
    void* params[] = {&device};
    e3emu_launch(function, 1, 1, 1, 32, 1, 1, 0, nullptr, params);
}

TEST(UndefinedBehaviorSanitizer, MisalignedVectorLoadIsCaught) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(launch_misaligned_vector_load(), "misaligned address");
}

} // namespace
#endif
