using E3.Backends.Numerics;
using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Tests.Emulator;
using Xunit;

namespace E3.Tests.GpuBackend;

/// <summary>
/// The memory-bound bf16 kernels take 8 elements a thread through 16-byte accesses when their pointers are 16-byte
/// aligned, and the element-by-element loop otherwise. Each test runs a kernel twice on the same values: once from
/// 256-byte-aligned buffers (the vector path, plus a scalar tail when the length is not a multiple of 8) and once from
/// buffers offset by one element (the scalar path). Elementwise kernels must give the same bits; the RMSNorm rows may
/// differ by one bf16 step where the sum of squares, added in another order, moves a value across a rounding boundary.
/// The scalar path is the one <see cref="EmuGpuDeviceTests"/> checks against double-precision references.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class Bf16VectorPathTests(EmuFixture fixture) : IDisposable
{
    readonly EmuDeviceScope _emu = EmuDeviceScope.After(fixture);

    GpuStream Stream => _emu.Stream.Handle;

    static readonly int[] Offsets = [0, 1]; // 0: aligned (vector path); 1 element = 2 bytes: the scalar path

    DevicePointer<T> Put<T>(T[] values, int offset) where T : unmanaged => _emu.UploadAt(values, offset);

    static Bf16[] Bf16Values(int n, int seed, float scale) => EmuGpuDeviceTests.ToBf16(Approx.Random(n, seed, scale));

    static ushort[] Bits(Bf16[] values) => values.Select(v => v.Bits).ToArray();

    [Theory]
    [InlineData(8 * 300)]      // vectors only
    [InlineData(8 * 300 + 5)]  // vectors and a scalar tail
    [InlineData(3)]            // tail only
    public void ElementwiseKernelsGiveTheSameBitsOnBothPaths(int n)
    {
        var g = Bf16Values(n, 1, 6f);
        var u = Bf16Values(n, 2, 2f);
        var h = Bf16Values(n, 3, 1f);
        using var swiglu = new SwiGluKernels(_emu.Device);
        using var residual = new ResidualKernels(_emu.Device);
        using var convert = new ConvertKernels(_emu.Device);

        var results = Offsets.Select(offset =>
        {
            var y = Put(new Bf16[n], offset);
            swiglu.Forward(Put(g, offset), Put(u, offset), y, n, Stream);
            var blended = Put(h, offset);
            residual.Gated(blended, Put(g, offset), Put(u, offset), 0.375f, n, Stream);
            var replaced = Put(h, offset);
            residual.Gated(replaced, Put(g, offset), Put(u, offset), 1f, n, Stream);
            var wide = Put(new float[n], offset);
            convert.ToF32(Put(g, offset), wide, n, Stream);
            var narrow = Put(new Bf16[n], offset);
            convert.ToBf16(Put(Special(n), offset), narrow, n, Stream);
            return (Swiglu: Bits(_emu.Download(y, n)), Blended: Bits(_emu.Download(blended, n)), Replaced: Bits(_emu.Download(replaced, n)),
                Wide: _emu.Download(wide, n), Narrow: Bits(_emu.Download(narrow, n)));
        }).ToArray();

        Assert.Equal(results[1].Swiglu, results[0].Swiglu);
        Assert.Equal(results[1].Blended, results[0].Blended);
        Assert.Equal(results[1].Replaced, results[0].Replaced);
        Assert.NotEqual(Bits(h), results[0].Replaced); // the kernels ran and wrote
        // Conversions against the host's own bit-exact rules.
        Assert.Equal(g.Select(b => BFloat16.ToSingle(b.Bits)).ToArray(), results[0].Wide);
        Assert.Equal(results[1].Wide, results[0].Wide);
        Assert.Equal(Special(n).Select(BFloat16.FromSingle).ToArray(), results[0].Narrow);
        Assert.Equal(results[1].Narrow, results[0].Narrow);
    }

    // Values that exercise the narrowing: ties to even, NaN, infinities, a subnormal, and random values.
    static float[] Special(int n)
    {
        var values = Approx.Random(n, 9, 3f);
        float[] edge = [1.00390625f, 1.01171875f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, 1e-40f, -0f, 3.4e38f];
        for (int i = 0; i < Math.Min(n, edge.Length); i++) values[i * 7 % n] = edge[i];
        return values;
    }

    [Fact]
    public void EmbeddingRowsAreCopiedOnBothPaths()
    {
        const int vocab = 13, dim = 8 * 40;
        var table = Bf16Values(vocab * dim, 4, 1f);
        int[] ids = [5, 0, 12, 5, 7, 3];
        using var kernels = new EmbeddingKernels(_emu.Device);
        var want = ids.SelectMany(id => table.AsSpan(id * dim, dim).ToArray()).ToArray();
        foreach (int offset in Offsets)
        {
            var y = Put(new Bf16[ids.Length * dim], offset);
            kernels.Forward(Put(table, offset), _emu.Upload<int>(ids), y, ids.Length, dim, Stream);
            Assert.Equal(Bits(want), Bits(_emu.Download(y, want.Length)));
        }
    }

    /// <summary>
    /// The fp32 trainer's lookup of a bf16 table: each row widened exactly (a bf16 value is the top half of its fp32),
    /// NaN, infinities and subnormals included, on the vector path and, with the table one element off, the scalar one.
    /// </summary>
    [Fact]
    public void EmbeddingRowsAreWidenedExactlyOnBothPaths()
    {
        const int vocab = 13, dim = 8 * 40;
        var table = Bf16Values(vocab * dim, 4, 1f);
        table[5 * dim + 3] = new Bf16(0x7fc0); // NaN
        table[5 * dim + 4] = new Bf16(0xff80); // -infinity
        table[0] = new Bf16(0x0001);           // the smallest subnormal
        int[] ids = [5, 0, 12, 5, 7, 3];
        using var kernels = new EmbeddingKernels(_emu.Device);
        var want = ids.SelectMany(id => table.AsSpan(id * dim, dim).ToArray()).Select(b => (uint)b.Bits << 16).ToArray();
        foreach (int offset in Offsets)
        {
            var y = _emu.Upload<float>(new float[ids.Length * dim]);
            kernels.Forward(Put(table, offset), _emu.Upload<int>(ids), y, ids.Length, dim, Stream);
            Assert.Equal(want, _emu.Download(y, want.Length).Select(BitConverter.SingleToUInt32Bits).ToArray());
        }
    }

    [Theory]
    [InlineData(8 * 40)]   // 320 columns: 40 vectors over 256 threads, most idle in the second stride
    [InlineData(8 * 512)]  // 4096 columns (Qwen3-8B): two vectors a thread
    public void RmsNormRowsAgreeOnBothPathsWithinOneBf16Step(int cols)
    {
        const int rows = 5;
        var x = Bf16Values(rows * cols, 5, 2f);
        var delta = Bf16Values(rows * cols, 6, 1f);
        var w = Bf16Values(cols, 7, 1f);
        var w2 = Bf16Values(rows * cols, 8, 1f);
        using var kernels = new RmsNormKernels(_emu.Device);

        var results = Offsets.Select(offset =>
        {
            var y = Put(new Bf16[rows * cols], offset);
            kernels.Forward(Put(x, offset), Put(w, offset), y, rows, cols, 1e-6f, Stream);
            var h = Put(x, offset);
            var yScaled = Put(new Bf16[rows * cols], offset);
            kernels.GatedResidualForward(h, Put(delta, offset), Put(w2, offset), 0.625f, Put(w, offset), yScaled, rows, cols, 1e-6f, Stream);
            var sum = Put(new Bf16[rows * cols], offset);
            var yAdd = Put(new Bf16[rows * cols], offset);
            kernels.AddForward(Put(x, offset), Put(delta, offset), sum, Put(w, offset), yAdd, rows, cols, 1e-6f, Stream);
            int n = rows * cols;
            return (Y: Bits(_emu.Download(y, n)), H: Bits(_emu.Download(h, n)), YScaled: Bits(_emu.Download(yScaled, n)),
                Sum: Bits(_emu.Download(sum, n)), YAdd: Bits(_emu.Download(yAdd, n)));
        }).ToArray();

        // The residual sums do not depend on the reduction: same bits.
        Assert.Equal(results[1].H, results[0].H);
        Assert.Equal(results[1].Sum, results[0].Sum);
        Assert.NotEqual(Bits(x), results[0].H);
        WithinOneStep(results[1].Y, results[0].Y, "rmsnorm");
        WithinOneStep(results[1].YScaled, results[0].YScaled, "gated_residual_rmsnorm");
        WithinOneStep(results[1].YAdd, results[0].YAdd, "add_rmsnorm");
    }

    static void WithinOneStep(ushort[] scalar, ushort[] vector, string what)
    {
        Assert.Equal(scalar.Length, vector.Length);
        int differing = 0;
        for (int i = 0; i < scalar.Length; i++)
        {
            if (scalar[i] == vector[i]) continue;
            differing++;
            // Same sign, adjacent magnitudes: one step of bf16's 8-bit significand.
            Assert.True((scalar[i] & 0x8000) == (vector[i] & 0x8000) && Math.Abs((scalar[i] & 0x7fff) - (vector[i] & 0x7fff)) == 1,
                $"{what}[{i}]: scalar 0x{scalar[i]:x4}, vector 0x{vector[i]:x4}");
        }
        // An order change moves an fp32 sum by an ulp or so; that crosses a bf16 rounding boundary for few elements.
        Assert.True(differing <= scalar.Length / 100, $"{what}: {differing} of {scalar.Length} elements differ");
    }

    public void Dispose() => _emu.Dispose();
}
