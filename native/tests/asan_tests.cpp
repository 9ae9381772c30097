// Only in the AddressSanitizer build (native/build-asan): an out-of-bounds kernel store and a misaligned vector load,
// both faults on a GPU, must be caught.
#include "emu_test_support.hpp"

#if defined(__SANITIZE_ADDRESS__)
namespace {

// One block of 32 threads of a faults.cu kernel over a fresh buffer of 16 floats, passed with its length when the
// kernel takes one.
void launch_fault(const char* kernel, bool pass_length) {
    e3emu_init(0);
    e3emu_module module = nullptr;
    e3emu_function function = nullptr;
    e3emu_module_load(&module, "faults");
    e3emu_module_get_function(&function, module, kernel);
    e3emu_deviceptr x = 0;
    e3emu_mem_alloc(&x, 16 * sizeof(float));
    float* device = reinterpret_cast<float*>(x);
    int n = 16;
    void* params[] = {&device, pass_length ? static_cast<void*>(&n) : nullptr};
    e3emu_launch(function, 1, 1, 1, 32, 1, 1, 0, nullptr, params);
}

TEST(AddressSanitizer, OutOfBoundsKernelStoreIsCaught) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(launch_fault("e3t_out_of_bounds", true), "heap-buffer-overflow");
}

TEST(UndefinedBehaviorSanitizer, MisalignedVectorLoadIsCaught) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(launch_fault("e3t_misaligned_vector_load", false), "misaligned address");
}

} // namespace
#endif
