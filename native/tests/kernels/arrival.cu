// Test kernel: records the order in which a block's threads run. No blocking builtin appears in this file, so its
// threads take the emulator's direct-call path. Launch: one block of any size; counter starts at 0.
extern "C" __global__ void e3t_arrival(int* order, int* counter)
{
    order[threadIdx.x] = atomicAdd(counter, 1);
}
