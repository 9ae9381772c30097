// Launch times of the semantics test kernels at 4096 x 4096 floats, for native/README.md.
// Usage: native/build/e3emu_bench [side, a multiple of 256; default 4096]   (E3EMU_WORKERS overrides the worker count)
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "e3emu/e3emu.h"

namespace {

void check(e3emu_result r, const char* what) {
    if (r != E3EMU_SUCCESS) {
        std::fprintf(stderr, "%s: %s: %s\n", what, e3emu_error_name(r), e3emu_last_error());
        std::exit(1);
    }
}

e3emu_function find(const char* module_name, const char* name) {
    e3emu_module module;
    e3emu_function function;
    check(e3emu_module_load(&module, module_name), module_name);
    check(e3emu_module_get_function(&function, module, name), name);
    return function;
}

double cpu_ms() {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

// Best wall time of `runs` launches, and the process CPU time of that run. On a shared machine the wall
// time includes waiting for a core; the CPU time is the work itself (summed over workers).
struct Timing {
    double wall_ms, cpu_ms;
};

template <class Launch>
Timing best_of(int runs, Launch launch) {
    Timing best{1e30, 0};
    for (int i = 0; i < runs; ++i) {
        const double cpu_start = cpu_ms();
        const auto start = std::chrono::steady_clock::now();
        launch();
        const double wall = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        if (wall < best.wall_ms) best = {wall, cpu_ms() - cpu_start};
    }
    return best;
}

} // namespace

int main(int argc, char** argv) {
    check(e3emu_init(0), "init");
    const int side = argc > 1 ? std::atoi(argv[1]) : 4096, n = side * side;
    std::vector<float> host(n, 1.0f);
    e3emu_deviceptr x, y, sums;
    check(e3emu_mem_alloc(&x, n * sizeof(float)), "alloc");
    check(e3emu_mem_alloc(&y, n * sizeof(float)), "alloc");
    check(e3emu_mem_alloc(&sums, (n / 256) * sizeof(float)), "alloc");
    check(e3emu_memcpy_htod(x, host.data(), n * sizeof(float)), "upload");
    float* px = reinterpret_cast<float*>(x);
    float* py = reinterpret_cast<float*>(y);
    float* psums = reinterpret_cast<float*>(sums);
    int count = n, rows = side, cols = side;

    e3emu_function reduce = find("reduce", "e3t_block_reduce_sum");
    void* reduce_params[] = {&px, &psums, &count};
    // One element per thread (65536 blocks of 256) and a grid-stride variant (1024 blocks, 64 elements each).
    const Timing reduce_flat = best_of(3, [&] { check(e3emu_launch(reduce, n / 256, 1, 1, 256, 1, 1, 0, nullptr, reduce_params), "reduce"); });
    const Timing reduce_strided = best_of(3, [&] { check(e3emu_launch(reduce, 1024, 1, 1, 256, 1, 1, 0, nullptr, reduce_params), "reduce"); });

    e3emu_function transpose = find("transpose", "e3t_transpose");
    void* transpose_params[] = {&px, &py, &rows, &cols};
    const Timing transpose_ms = best_of(3, [&] {
        check(e3emu_launch(transpose, side / 32, side / 32, 1, 32, 8, 1, 0, nullptr, transpose_params), "transpose");
    });

    // A barrier-free kernel on the direct-call fast path: 2^20 threads writing 12 words each.
    e3emu_function coordinates = find("coordinates", "e3t_coordinates");
    e3emu_deviceptr coords;
    check(e3emu_mem_alloc(&coords, (1u << 20) * 12 * sizeof(unsigned)), "alloc");
    unsigned* pcoords = reinterpret_cast<unsigned*>(coords);
    void* coordinates_params[] = {&pcoords};
    const Timing coordinates_ms = best_of(3, [&] {
        check(e3emu_launch(coordinates, 4096, 1, 1, 256, 1, 1, 0, nullptr, coordinates_params), "coordinates");
    });

    std::printf("workers: %d\n", e3emu_worker_count());
    std::printf("coordinates (fast path), 4096 blocks x 256 threads: %.1f ms wall, %.1f ms CPU\n",
                coordinates_ms.wall_ms, coordinates_ms.cpu_ms);
    std::printf("reduce %dx%d floats, %d blocks x 256 threads: %.1f ms wall, %.1f ms CPU\n", side, side, n / 256, reduce_flat.wall_ms, reduce_flat.cpu_ms);
    std::printf("reduce %dx%d floats, 1024 blocks x 256 threads (grid-stride): %.1f ms wall, %.1f ms CPU\n", side, side, reduce_strided.wall_ms, reduce_strided.cpu_ms);
    std::printf("transpose %dx%d floats, %d blocks x 256 threads: %.1f ms wall, %.1f ms CPU\n", side, side, (side / 32) * (side / 32), transpose_ms.wall_ms, transpose_ms.cpu_ms);
    e3emu_mem_free(x);
    e3emu_mem_free(y);
    e3emu_mem_free(sums);
    e3emu_mem_free(coords);
    return 0;
}
