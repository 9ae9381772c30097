// Execution semantics of the emulator, each checked with a kernel written for the purpose
// (native/tests/kernels) against values computed here by exact enumeration.
#include <chrono>
#include <cstdint>
#include <random>

#include "emu_test_support.hpp"

namespace {

class Semantics : public EmuTest {};

TEST_F(Semantics, BlockReductionWithShufflesAndSharedMemoryIsExact) {
    // Multiples of 1/16 in [-0.5, 0.5]: every partial sum of up to 2^20 of them needs at most 23 significant
    // bits, so float addition is exact in any order and the block sums must equal the exact sums bit for bit.
    const int n = (1 << 20) + 77, blocks = 64, threads = 256;
    std::mt19937 rng(1);
    std::uniform_int_distribution<int> sixteenths(-8, 8);
    std::vector<float> x(n);
    for (float& v : x) v = sixteenths(rng) / 16.0f;
    std::vector<double> expected(blocks, 0.0);
    for (int i = 0; i < n; ++i) expected[(i / threads) % blocks] += x[i];

    DeviceBuffer<float> dx(x), sums(blocks);
    int count = n;
    void* params[] = {dx.param(), sums.param(), &count};
    E3EMU_CHECK(e3emu_launch(kernel("reduce", "e3t_block_reduce_sum"), blocks, 1, 1, threads, 1, 1, 0, nullptr, params));
    const auto got = sums.download();
    for (int b = 0; b < blocks; ++b) EXPECT_EQ(got[b], expected[b]) << "block " << b;
}

TEST_F(Semantics, TiledTransposeOfNonMultipleSizeIsExact) {
    const int rows = 1000, cols = 777;
    std::vector<float> in(static_cast<std::size_t>(rows) * cols);
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i);
    DeviceBuffer<float> din(in), dout(in.size());
    dout.fill_bytes(0xff); // NaN everywhere, so an unwritten element cannot pass
    int r = rows, c = cols;
    void* params[] = {din.param(), dout.param(), &r, &c};
    E3EMU_CHECK(e3emu_launch(kernel("transpose", "e3t_transpose"), (cols + 31) / 32, (rows + 31) / 32, 1, 32, 8, 1, 0,
                             nullptr, params));
    const auto out = dout.download();
    for (int y = 0; y < rows; ++y)
        for (int x = 0; x < cols; ++x)
            ASSERT_EQ(out[static_cast<std::size_t>(x) * rows + y], in[static_cast<std::size_t>(y) * cols + x]) << y << "," << x;
}

TEST_F(Semantics, BallotAnyAllHonourPartialMasks) {
    const int blocks = 3, threads = 64, n = blocks * threads;
    std::mt19937 rng(2);
    std::vector<int> predicate(n);
    for (int& p : predicate) p = (rng() % 3 == 0) ? 0 : static_cast<int>(rng() % 5); // nonzero values are "true"
    // Make one group unanimous so __all_sync is also seen returning 1.
    for (int lane = 1; lane < 16; lane += 2) predicate[lane] = 3;
    DeviceBuffer<int> dp(predicate), any(n), all(n);
    DeviceBuffer<unsigned> ballot(n);
    void* params[] = {dp.param(), ballot.param(), any.param(), all.param()};
    E3EMU_CHECK(e3emu_launch(kernel("warp_ops", "e3t_warp_vote"), blocks, 1, 1, threads, 1, 1, 0, nullptr, params));
    const auto got_ballot = ballot.download();
    const auto got_any = any.download();
    const auto got_all = all.download();
    bool saw_all_true = false;
    for (int t = 0; t < n; ++t) {
        const int lane = t % 32, warp_base = t - lane;
        const unsigned mask = lane % 2 == 0 ? 0x55555555u : lane < 16 ? 0x0000aaaau : 0xaaaa0000u;
        unsigned expected = 0;
        for (int l = 0; l < 32; ++l)
            if ((mask >> l & 1u) && predicate[warp_base + l] != 0) expected |= 1u << l;
        EXPECT_EQ(got_ballot[t], expected) << "thread " << t;
        EXPECT_EQ(got_any[t], expected != 0 ? 1 : 0) << "thread " << t;
        EXPECT_EQ(got_all[t], expected == mask ? 1 : 0) << "thread " << t;
        saw_all_true |= got_all[t] == 1;
    }
    EXPECT_TRUE(saw_all_true);
}

TEST_F(Semantics, ShufflesAtWidth16FollowCudaSegmentRules) {
    const int threads = 64;
    std::vector<float> in(threads);
    for (int i = 0; i < threads; ++i) in[i] = 100.0f + i;
    // lane_mask 20 sends low-half lanes to the later 16-lane group (CUDA returns their own value) and
    // high-half lanes to the earlier group (allowed); src_lane 19 wraps to lane 3 of each segment.
    int delta = 3, lane_mask = 20, src_lane = 19;
    DeviceBuffer<float> din(in), up(threads), down(threads), xr(threads), bc(threads);
    void* params[] = {din.param(), up.param(), down.param(), xr.param(), bc.param(), &delta, &lane_mask, &src_lane};
    E3EMU_CHECK(e3emu_launch(kernel("warp_ops", "e3t_shfl_width16"), 1, 1, 1, threads, 1, 1, 0, nullptr, params));
    const auto got_up = up.download(), got_down = down.download(), got_xor = xr.download(), got_bc = bc.download();
    for (int t = 0; t < threads; ++t) {
        const int lane = t % 32, warp_base = t - lane, segment = lane & ~15, offset = lane - segment;
        EXPECT_EQ(got_up[t], offset >= delta ? in[t - delta] : in[t]) << t;
        EXPECT_EQ(got_down[t], offset + delta < 16 ? in[t + delta] : in[t]) << t;
        const int x = lane ^ lane_mask;
        EXPECT_EQ(got_xor[t], x < segment + 16 ? in[warp_base + x] : in[t]) << t;
        EXPECT_EQ(got_bc[t], in[warp_base + segment + (src_lane % 16)]) << t;
    }
}

TEST_F(Semantics, SyncwarpAnd64BitShufflesRotateAWarp) {
    std::vector<long long> in(32);
    for (int i = 0; i < 32; ++i) in[i] = (1ll << 40) + i * 3;
    DeviceBuffer<long long> din(in), dout(32);
    void* params[] = {din.param(), dout.param()};
    E3EMU_CHECK(e3emu_launch(kernel("warp_ops", "e3t_warp_rotate"), 1, 1, 1, 32, 1, 1, 0, nullptr, params));
    const auto out = dout.download();
    // Lane l reads lane l-1's neighbour, which is lane l's own input.
    for (int l = 0; l < 32; ++l) EXPECT_EQ(out[l], in[l]) << l;
}

TEST_F(Semantics, AtomicsFromManyBlocksGiveExactTotals) {
    // Values in [0, 1000] and n = 16000 keep every float partial sum an integer below 2^24, so float
    // atomicAdd is exact in any order.
    const int n = 16000, threads = 128, blocks = (n + threads - 1) / threads;
    std::mt19937 rng(3);
    std::vector<int> values(n);
    for (int& v : values) v = static_cast<int>(rng() % 1001);
    long long sum = 0;
    int max_value = 0;
    unsigned max_unsigned = 0;
    for (int v : values) {
        sum += v;
        max_value = std::max(max_value, v);
        max_unsigned = std::max(max_unsigned, static_cast<unsigned>(v) * 2654435761u);
    }
    DeviceBuffer<int> dv(values), dsum(std::vector<int>{0}), dmax(std::vector<int>{-1}), slot(std::vector<int>{-1});
    DeviceBuffer<unsigned> dmaxu(std::vector<unsigned>{0});
    DeviceBuffer<float> dfsum(std::vector<float>{0.0f});
    DeviceBuffer<unsigned long long> cas(std::vector<unsigned long long>{0});
    DeviceBuffer<long long> exchanged(std::vector<long long>{0});
    int count = n;
    void* params[] = {dv.param(), &count, dsum.param(), dmax.param(), dmaxu.param(), dfsum.param(), cas.param(),
                      slot.param(), exchanged.param()};
    E3EMU_CHECK(e3emu_launch(kernel("atomics", "e3t_atomics"), blocks, 1, 1, threads, 1, 1, 0, nullptr, params));
    EXPECT_EQ(dsum.download()[0], sum);
    EXPECT_EQ(dmax.download()[0], max_value);
    EXPECT_EQ(dmaxu.download()[0], max_unsigned);
    EXPECT_EQ(dfsum.download()[0], static_cast<float>(sum));
    EXPECT_EQ(cas.download()[0], static_cast<unsigned long long>(n));
    // The slot starts at -1; every thread index 0..n-1 plus that -1 is returned exactly once or left behind.
    const long long ids = static_cast<long long>(n) * (n - 1) / 2 - 1;
    EXPECT_EQ(exchanged.download()[0] + slot.download()[0], ids);
}

TEST_F(Semantics, BarrierDivergenceIsReportedNotHung) {
    DeviceBuffer<float> x(128); // 64 per block
    int n = 40; // threads 40..63 of each block exit before the barrier
    void* params[] = {x.param(), &n};
    const auto start = std::chrono::steady_clock::now();
    const e3emu_result r =
        e3emu_launch(kernel("faults", "e3t_barrier_divergence"), 2, 1, 1, 64, 1, 1, 0, nullptr, params);
    EXPECT_EQ(r, E3EMU_ERROR_LAUNCH_FAILED);
    const std::string message = e3emu_last_error();
    EXPECT_NE(message.find("kernel e3t_barrier_divergence"), std::string::npos) << message;
    EXPECT_NE(message.find("block ("), std::string::npos) << message;
    EXPECT_NE(message.find("thread (40,0,0) has exited"), std::string::npos) << message;
    EXPECT_NE(message.find("waits at __syncthreads #1"), std::string::npos) << message;
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));

    // The same kernel with no early exit is fine, and the runtime keeps working after the failure.
    n = 64;
    E3EMU_CHECK(e3emu_launch(kernel("faults", "e3t_barrier_divergence"), 2, 1, 1, 64, 1, 1, 0, nullptr, params));
    for (float v : x.download()) EXPECT_EQ(v, 2.0f);
}

TEST_F(Semantics, WarpCollectiveWithAnExitedLaneIsReported) {
    DeviceBuffer<float> x(std::vector<float>(32, 1.0f));
    void* params[] = {x.param()};
    EXPECT_EQ(e3emu_launch(kernel("faults", "e3t_shuffle_missing_lane"), 1, 1, 1, 32, 1, 1, 0, nullptr, params),
              E3EMU_ERROR_LAUNCH_FAILED);
    const std::string message = e3emu_last_error();
    EXPECT_NE(message.find("__shfl_xor_sync"), std::string::npos) << message;
    EXPECT_NE(message.find("lane 5 (thread (5,0,0)) has exited"), std::string::npos) << message;
}

TEST_F(Semantics, ThreeDimensionalGridsAndBlocksSeeTheirCoordinates) {
    const unsigned gx = 3, gy = 2, gz = 2, bx = 4, by = 3, bz = 2;
    const std::size_t threads = gx * gy * gz * bx * by * bz;
    DeviceBuffer<unsigned> out(threads * 12);
    out.fill_bytes(0xff);
    void* params[] = {out.param()};
    E3EMU_CHECK(e3emu_launch(kernel("coordinates", "e3t_coordinates"), gx, gy, gz, bx, by, bz, 0, nullptr, params));
    const auto got = out.download();
    std::size_t row = 0;
    for (unsigned z = 0; z < gz; ++z)
        for (unsigned y = 0; y < gy; ++y)
            for (unsigned x = 0; x < gx; ++x)
                for (unsigned tz = 0; tz < bz; ++tz)
                    for (unsigned ty = 0; ty < by; ++ty)
                        for (unsigned tx = 0; tx < bx; ++tx, ++row) {
                            const std::vector<unsigned> expected{tx, ty, tz, x, y, z, bx, by, bz, gx, gy, gz};
                            const std::vector<unsigned> actual(got.begin() + row * 12, got.begin() + row * 12 + 12);
                            ASSERT_EQ(actual, expected) << "row " << row;
                        }
}

TEST_F(Semantics, DynamicSharedMemoryIsSizedByTheLaunch) {
    const int per_block = 1000, blocks = 5;
    std::vector<float> in(per_block * blocks);
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i) * 0.5f;
    DeviceBuffer<float> din(in), dout(in.size());
    int segment = per_block;
    void* params[] = {din.param(), dout.param(), &segment};
    E3EMU_CHECK(e3emu_launch(kernel("shapes", "e3t_dynamic_reverse"), blocks, 1, 1, 128, 1, 1, per_block * sizeof(float),
                             nullptr, params));
    const auto out = dout.download();
    for (int b = 0; b < blocks; ++b)
        for (int i = 0; i < per_block; ++i)
            ASSERT_EQ(out[b * per_block + i], in[b * per_block + per_block - 1 - i]) << b << "," << i;
}

TEST_F(Semantics, LargestBlockRunsBarriersAcross1024Threads) {
    // 1024 threads (32 warps) all live at once: every fiber needs its own stack across the barrier.
    const int n = 1024 * 3;
    std::vector<float> x(n);
    for (int i = 0; i < n; ++i) x[i] = static_cast<float>(i % 17);
    double expected = 0;
    for (float v : x) expected += v;
    DeviceBuffer<float> dx(x), sums(1);
    int count = n;
    void* params[] = {dx.param(), sums.param(), &count};
    E3EMU_CHECK(e3emu_launch(kernel("reduce", "e3t_block_reduce_sum"), 1, 1, 1, 1024, 1, 1, 0, nullptr, params));
    EXPECT_EQ(sums.download()[0], expected); // integers below 2^24: exact
}

} // namespace

namespace {

TEST_F(Semantics, MathAndBitIntrinsicsMatchDoublePrecisionReferences) {
    std::vector<float> x{-3.25f, -1.0f, -0.375f, 0.0f, 0.125f, 0.7f, 1.5f, 2.75f, 6.0f, -7.5f};
    const int n = static_cast<int>(x.size());
    DeviceBuffer<float> dx(x), out(x.size() * 20);
    void* params[] = {dx.param(), out.param(), const_cast<int*>(&n)};
    E3EMU_CHECK(e3emu_launch(kernel("intrinsics", "e3t_intrinsics"), 1, 1, 1, 32, 1, 1, 0, nullptr, params));
    const auto got = out.download();
    for (int t = 0; t < n; ++t) {
        const double v = x[t], a = std::fabs(v) + 0.5;
        const float* o = &got[20 * t];
        std::uint32_t bits;
        std::memcpy(&bits, &x[t], 4);
        // libm's float functions are correctly rounded or within a few ulp; 4 float ulps of the result
        // (relative 2^-21) covers them while any wrong function is off by far more.
        auto near = [](double expected) { return std::fabs(expected) * std::ldexp(1.0, -21) + 1e-30; };
        EXPECT_NEAR(o[0], std::exp(v), near(std::exp(v))) << t;
        EXPECT_NEAR(o[1], std::exp(v), near(std::exp(v))) << t;
        EXPECT_NEAR(o[2], std::log(a), near(std::log(a)) + 1e-7) << t;
        EXPECT_NEAR(o[3], std::log(a), near(std::log(a)) + 1e-7) << t;
        EXPECT_NEAR(o[4], std::log1p(a), near(std::log1p(a))) << t;
        EXPECT_NEAR(o[5], std::exp2(v), near(std::exp2(v))) << t;
        EXPECT_NEAR(o[6], std::sqrt(a), near(std::sqrt(a))) << t;
        EXPECT_NEAR(o[7], 1.0 / std::sqrt(a), near(1.0 / std::sqrt(a))) << t;
        EXPECT_NEAR(o[8], v / a, near(v / a)) << t;
        EXPECT_EQ(o[9], std::min(std::max(v, -1.0), 1.0)) << t;
        EXPECT_EQ(o[10], std::floor(v)) << t;
        EXPECT_NEAR(o[11], std::tanh(v), near(std::tanh(v)) + 1e-7) << t;
        EXPECT_EQ(o[12], -x[t]) << t;
        EXPECT_EQ(o[13], static_cast<float>(2 * a)) << t; // a >= 0.5 is normal, so +1 exponent doubles it
        EXPECT_EQ(o[14], static_cast<float>(__builtin_popcount(bits))) << t;
        EXPECT_EQ(o[15], static_cast<float>(bits == 0 ? 0 : __builtin_ctz(bits) + 1)) << t;
        EXPECT_EQ(o[16], static_cast<float>(std::min(t, 3) + std::max(t, 5))) << t;
        EXPECT_EQ(o[17], static_cast<float>(std::min(v, a) + std::max(v, -a))) << t;
        EXPECT_EQ(o[18], 1.0f) << t;
        EXPECT_EQ(o[19], static_cast<float>(std::max(-t, static_cast<int>(x[t] * 4.0f)))) << t;
    }
}

} // namespace

namespace {

// Runs a block's threads in the given order for the scope, then back to what it was.
class ThreadOrderScope {
public:
    explicit ThreadOrderScope(e3emu_thread_order order) : saved_(e3emu_thread_order_in_use()) { e3emu_set_thread_order(order); }
    ~ThreadOrderScope() { e3emu_set_thread_order(saved_); }
    ThreadOrderScope(const ThreadOrderScope&) = delete;
    ThreadOrderScope& operator=(const ThreadOrderScope&) = delete;

private:
    e3emu_thread_order saved_;
};

class ThreadOrder : public EmuTest {};

// The position at which each of `threads` threads ran, from a kernel of the form (…, int* order, int* counter).
std::vector<int> arrival(e3emu_function function, unsigned threads, DeviceBuffer<int>* extra = nullptr) {
    DeviceBuffer<int> order(threads);
    DeviceBuffer<int> counter(std::vector<int>{0});
    std::vector<void*> params;
    if (extra != nullptr) params.push_back(extra->param());
    params.push_back(order.param());
    params.push_back(counter.param());
    if (e3emu_launch(function, 1, 1, 1, threads, 1, 1, 0, nullptr, params.data()) != E3EMU_SUCCESS)
        throw std::runtime_error(e3emu_last_error());
    return order.download();
}

std::vector<int> iota(int n, bool reverse) {
    std::vector<int> v(n);
    for (int i = 0; i < n; ++i) v[i] = reverse ? n - 1 - i : i;
    return v;
}

TEST_F(ThreadOrder, ReverseRunsABlocksThreadsLastToFirstOnBothPaths) {
    const auto direct = kernel("arrival", "e3t_arrival");
    const auto fibers = kernel("faults", "e3t_missing_barrier");
    DeviceBuffer<int> neighbour(96);
    for (auto order : {E3EMU_THREAD_ORDER_FORWARD, E3EMU_THREAD_ORDER_REVERSE}) {
        ThreadOrderScope scope(order);
        EXPECT_EQ(e3emu_thread_order_in_use(), order);
        const bool reverse = order == E3EMU_THREAD_ORDER_REVERSE;
        EXPECT_EQ(arrival(direct, 96, nullptr), iota(96, reverse));
        EXPECT_EQ(arrival(fibers, 96, &neighbour), iota(96, reverse));
    }
    EXPECT_EQ(e3emu_set_thread_order(static_cast<e3emu_thread_order>(2)), E3EMU_ERROR_INVALID_VALUE);
}

// The point of the reverse order: a read of a lower thread's shared slot that lacks its barrier is right in forward
// order, so it would pass every test, and stale in reverse order.
TEST_F(ThreadOrder, AMissingBarrierShowsInOneOrderOrTheOther) {
    const auto function = kernel("faults", "e3t_missing_barrier");
    const unsigned threads = 64;
    DeviceBuffer<int> neighbour(threads);
    std::vector<int> right(threads), stale(threads, 0);
    for (unsigned t = 0; t < threads; ++t) right[t] = t > 0 ? static_cast<int>(t) : -1;
    stale[0] = -1;
    {
        ThreadOrderScope forward(E3EMU_THREAD_ORDER_FORWARD);
        arrival(function, threads, &neighbour);
        EXPECT_EQ(neighbour.download(), right);
    }
    {
        ThreadOrderScope reverse(E3EMU_THREAD_ORDER_REVERSE);
        arrival(function, threads, &neighbour);
        EXPECT_EQ(neighbour.download(), stale);
    }
}

} // namespace

namespace {

class SharedMemory : public EmuTest {};

// Every block, not just a worker's first, finds its dynamic shared memory as all-ones bytes: a kernel that reads a
// slot before writing it sees -1 (or NaN for floats) instead of the previous block's values.
TEST_F(SharedMemory, DynamicSharedMemoryStartsAsAllOnesInEveryBlock) {
    const unsigned blocks = 8, threads = 32;
    DeviceBuffer<int> out(blocks * threads);
    int fill = 12345;
    void* params[] = {out.param(), &fill};
    E3EMU_CHECK(e3emu_launch(kernel("faults", "e3t_read_before_write_shared"), blocks, 1, 1, threads, 1, 1,
                             threads * sizeof(int), nullptr, params));
    for (int v : out.download()) EXPECT_EQ(v, -1);
}

// Static shared arrays (E3_SHARED) live once per worker thread, so without the poisoning a worker's second block would
// find the first one's fill; it finds all-ones bytes, as on the first.
TEST_F(SharedMemory, StaticSharedMemoryStartsAsAllOnesInEveryBlock) {
    const unsigned blocks = 16, threads = 64;
    DeviceBuffer<int> out(blocks * threads);
    int fill = 12345;
    void* params[] = {out.param(), &fill};
    for (int round = 0; round < 2; ++round) { // the second launch finds the arrays the first one left
        E3EMU_CHECK(e3emu_launch(kernel("faults", "e3t_read_before_write_static_shared"), blocks, 1, 1, threads, 1, 1, 0,
                                 nullptr, params));
        for (int v : out.download()) EXPECT_EQ(v, -1);
    }
}

// The first thread of a block to reach the declaration poisons the array; a write made after that by another thread
// survives to the barrier, whichever thread runs first.
TEST_F(SharedMemory, StaticSharedMemoryIsPoisonedOncePerBlockNotPerThread) {
    const unsigned blocks = 6, threads = 64;
    for (bool reverse : {false, true}) {
        ThreadOrderScope order(reverse ? E3EMU_THREAD_ORDER_REVERSE : E3EMU_THREAD_ORDER_FORWARD);
        DeviceBuffer<int> out(blocks * threads);
        void* params[] = {out.param()};
        E3EMU_CHECK(e3emu_launch(kernel("faults", "e3t_static_shared_write_survives"), blocks, 1, 1, threads, 1, 1, 0,
                                 nullptr, params));
        const auto got = out.download();
        for (unsigned i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], 1000 + static_cast<int>(i / threads)) << "thread " << i << (reverse ? " (reverse)" : "");
    }
}

} // namespace
