// Test kernel: out (cols x rows) = transpose of in (rows x cols), row-major, through a 32x33 shared tile
// (the extra column avoids bank conflicts on a GPU). Reads and writes rows*cols floats once.
// Launch: block (32, 8), grid (ceil(cols/32), ceil(rows/32)).
extern "C" __global__ void e3t_transpose(const float* __restrict__ in, float* __restrict__ out, int rows, int cols)
{
    E3_SHARED(float, tile, [32][33]);
    const int x = blockIdx.x * 32 + threadIdx.x;
    for (int dy = threadIdx.y; dy < 32; dy += blockDim.y) {
        const int y = blockIdx.y * 32 + dy;
        if (x < cols && y < rows) tile[dy][threadIdx.x] = in[(long long)y * cols + x];
    }
    __syncthreads();
    const int out_col = blockIdx.y * 32 + threadIdx.x;
    for (int dy = threadIdx.y; dy < 32; dy += blockDim.y) {
        const int out_row = blockIdx.x * 32 + dy;
        if (out_col < rows && out_row < cols) out[(long long)out_row * rows + out_col] = tile[threadIdx.x][dy];
    }
}
