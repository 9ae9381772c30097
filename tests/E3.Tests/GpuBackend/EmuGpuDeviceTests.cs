using E3.Backends.Numerics;
using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Tests.Emulator;
using Xunit;

namespace E3.Tests.GpuBackend;

/// <summary>
/// The existing kernel families, unchanged, on <see cref="E3.Interop.Emulator.EmuGpuDevice"/> against references
/// computed in double here; plus the device's own contract (copies, fills, launch checks, GEMM).
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class EmuGpuDeviceTests(EmuFixture fixture) : IDisposable
{
    // An fp32 kernel with a short reduction (≤ 256 values through a warp butterfly and 8 warp partials: depth ~13
    // additions, ≤ 13·2^-24 ≈ 8e-7 relative on the sum, halved by the square root) and a few rounded products is
    // within ~1e-6 of the exact result; 2e-6 leaves a factor of two for rsqrtf/expf's couple of ulp.
    const double F32Relative = 2e-6;

    // bf16 keeps 8 significant bits, so one rounding is off by at most 2^-8 relative. A bf16 kernel rounds its output
    // and, like torch, an intermediate too (normed values, silu): two roundings, 2^-7, plus the fp32 error above.
    const double Bf16Relative = 2.0 / 256 + F32Relative;

    readonly EmuDeviceScope _emu = new();

    GpuStream Stream => _emu.Stream.Handle;

    [Fact]
    public void RmsNormMatchesDoubleInFp32AndBf16()
    {
        _ = fixture.Device;
        const int rows = 5, cols = 200; // cols below the block size leaves some threads idle in the reduction
        var x = Approx.Random(rows * cols, 1, 3f);
        var w = Approx.Random(cols, 2);
        using var kernels = new RmsNormKernels(_emu.Device);

        var y = _emu.Upload<float>(new float[rows * cols]);
        kernels.Forward(_emu.Upload<float>(x), _emu.Upload<float>(w), y, rows, cols, 1e-6f, Stream);
        Approx.Close(RmsNorm(x, w, rows, cols, 1e-6), _emu.Download(y, rows * cols), F32Relative, 0, "rmsnorm f32");

        float[] xb = Approx.RoundBf16(x), wb = Approx.RoundBf16(w);
        var yb = _emu.Upload<Bf16>(new Bf16[rows * cols]);
        kernels.Forward(_emu.Upload<Bf16>(ToBf16(xb)), _emu.Upload<Bf16>(ToBf16(wb)), yb, rows, cols, 1e-6f, Stream);
        Approx.Close(RmsNorm(xb, wb, rows, cols, 1e-6), FromBf16(_emu.Download(yb, rows * cols)), Bf16Relative, 0, "rmsnorm bf16");
    }

    [Fact]
    public void SwiGluMatchesDoubleInFp32AndBf16()
    {
        const int n = 1000; // four blocks, the last partly idle
        var g = Approx.Random(n, 3, 6f);
        var u = Approx.Random(n, 4, 2f);
        using var kernels = new SwiGluKernels(_emu.Device);
        static double[] Reference(float[] g, float[] u) => g.Select((gi, i) => gi / (1 + Math.Exp(-(double)gi)) * u[i]).ToArray();

        var y = _emu.Upload<float>(new float[n]);
        kernels.Forward(_emu.Upload<float>(g), _emu.Upload<float>(u), y, n, Stream);
        Approx.Close(Reference(g, u), _emu.Download(y, n), F32Relative, 0, "swiglu f32");

        float[] gb = Approx.RoundBf16(g), ub = Approx.RoundBf16(u);
        var yb = _emu.Upload<Bf16>(new Bf16[n]);
        kernels.Forward(_emu.Upload<Bf16>(ToBf16(gb)), _emu.Upload<Bf16>(ToBf16(ub)), yb, n, Stream);
        Approx.Close(Reference(gb, ub), FromBf16(_emu.Download(yb, n)), Bf16Relative, 0, "swiglu bf16");
    }

    [Fact]
    public void EmbeddingCopiesTheRowsExactly()
    {
        const int vocab = 11, dim = 300;
        var table = Approx.Random(vocab * dim, 5);
        int[] ids = [3, 0, 10, 3, 7];
        using var kernels = new EmbeddingKernels(_emu.Device);
        var deviceIds = _emu.Upload<int>(ids);
        var want = ids.SelectMany(id => table.AsSpan(id * dim, dim).ToArray()).ToArray();

        var y = _emu.Upload<float>(new float[ids.Length * dim]);
        kernels.Forward(_emu.Upload<float>(table), deviceIds, y, ids.Length, dim, Stream);
        Assert.Equal(want, _emu.Download(y, want.Length));

        var yb = _emu.Upload<Bf16>(new Bf16[ids.Length * dim]);
        kernels.Forward(_emu.Upload<Bf16>(ToBf16(table)), deviceIds, yb, ids.Length, dim, Stream);
        Assert.Equal(ToBf16(want), _emu.Download(yb, want.Length));
    }

    [Theory]
    [InlineData(3, 64)]     // every lane of the warp owns one rotation pair
    [InlineData(1400, 16)]  // 8,400 (row, head) items: more than the forward grid's 2,048 blocks of 4 warps, so warps loop
    [InlineData(2, 320)]    // 160 pairs: past the 128 whose frequencies a lane keeps in registers
    public void HeadNormRopeMatchesDoubleInFp32AndBf16(int heads, int headDim)
    {
        // Two sequences of 3 tokens from position 5.
        const int batch = 2, T = 3, start = 5;
        const float theta = 10000f, eps = 1e-6f;
        int n = batch * T * heads * headDim;
        var x = Approx.Random(n, 6, 2f);
        var w = Approx.Random(headDim, 7, 1.5f);
        var layout = new RopeLayout(batch * T, heads, headDim, theta, T, start);
        using var kernels = new RopeKernels(_emu.Device);

        var xd = _emu.Upload<float>(x);
        kernels.HeadNormRope(xd, _emu.Upload<float>(w), eps, layout, Stream);
        var (want, pairScale) = HeadNormRope(x, w, batch * T, heads, headDim, theta, T, start, eps);
        // The angle p·θ^(-2i/d) is formed in fp32 (p ≤ 7, |angle| ≤ 7: ~3 ulp ≈ 1.5e-6 absolute), and sin/cos and
        // the products add a few ulp; relative to the rotated pair's size |a|+|b| that is below 4e-6.
        Approx.Close(want, _emu.Download(xd, n), i => 4e-6 * pairScale[i], "head_norm_rope f32");

        float[] xb = Approx.RoundBf16(x), wb = Approx.RoundBf16(w);
        var xbd = _emu.Upload<Bf16>(ToBf16(xb));
        kernels.HeadNormRope(xbd, _emu.Upload<Bf16>(ToBf16(wb)), eps, layout, Stream);
        var (wantB, scaleB) = HeadNormRope(xb, wb, batch * T, heads, headDim, theta, T, start, eps);
        // bf16 rounds like Hugging Face: the normed a and b twice each, cos and sin, both products and the sum, each a
        // 2^-8 relative step on a term no larger than |a|+|b|: seven steps, under 2^-5 of the pair's size.
        Approx.Close(wantB, FromBf16(_emu.Download(xbd, n)), i => scaleB[i] / 32, "head_norm_rope bf16");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RowMajorLinearThroughGemmMatchesDouble(bool bf16)
    {
        var type = bf16 ? GemmDataType.BF16 : GemmDataType.F32;
        const int m = 5, n = 7, k = 40;
        var x = Approx.Random(m * k, 8);
        var w = Approx.Random(n * k, 9);
        if (type == GemmDataType.BF16) { x = Approx.RoundBf16(x); w = Approx.RoundBf16(w); }
        DevicePtr Put(float[] v) => type == GemmDataType.F32 ? _emu.Upload<float>(v).Raw : _emu.Upload<Bf16>(ToBf16(v)).Raw;
        var y = Put(new float[m * n]);
        _emu.Device.Gemm(RowMajorGemm.Linear(Put(x), Put(w), y, m, n, k, type, type), Stream);
        var got = type == GemmDataType.F32 ? _emu.Download(new DevicePointer<float>(y), m * n) : FromBf16(_emu.Download(new DevicePointer<Bf16>(y), m * n));

        var want = new double[m * n];
        var magnitude = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                for (int c = 0; c < k; c++)
                {
                    want[i * n + j] += (double)x[i * k + c] * w[j * k + c];
                    magnitude[i * n + j] += Math.Abs((double)x[i * k + c] * w[j * k + c]);
                }
        // fp32 accumulation of k products: at most k·2^-24 of the sum of magnitudes (the classic γ_k bound); a bf16
        // output is then rounded once more (2^-8 relative: bf16 keeps 8 significant bits).
        double output = type == GemmDataType.BF16 ? 1.0 / 256 : 0;
        Approx.Close(want, got, i => k * Math.Pow(2, -24) * magnitude[i] + output * Math.Abs(want[i]), $"gemm {type}");
    }

    [Fact]
    public void CopiesAndFillsAreExactAndStreamOrdered()
    {
        var device = _emu.Device;
        using var a = device.AllocateBuffer(64 * sizeof(uint));
        using var b = device.AllocateBuffer(64 * sizeof(uint));
        device.FillWordsAsync(a.Pointer, 0xdeadbeef, 64, Stream);
        device.FillBytesAsync(a.Pointer.Add(8), 0x11, 8, Stream);
        device.CopyAsync(b.Pointer, a.Pointer, 64 * sizeof(uint), Stream);
        using var done = device.CreateOwnedEvent();
        done.Record(Stream);
        done.Synchronize();
        var got = _emu.Download(b.As<uint>(), 64);
        var want = Enumerable.Repeat(0xdeadbeefu, 64).ToArray();
        want[2] = want[3] = 0x11111111u;
        Assert.Equal(want, got);
    }

    [Fact]
    public void LaunchesAreCheckedAsTheDriverWould()
    {
        var device = _emu.Device;
        using var module = device.LoadOwnedModule("rmsnorm");
        var function = module.GetFunction("e3_rmsnorm_f32");
        var attributes = device.GetAttributes(function);
        Assert.Equal(1024, attributes.MaxThreadsPerBlock);
        Assert.Equal(48 * 1024, attributes.MaxDynamicSharedBytes);

        var stream = Stream;
        var error = Assert.Throws<ArgumentException>(() =>
        {
            var tooFew = new KernelArgs();
            tooFew.Add(DevicePtr.Null);
            device.Launch(function, LaunchShapes.RowPerBlock(1), stream, tooFew);
        });
        Assert.Contains("e3_rmsnorm_f32 takes 6 parameters, 1 given", error.Message);

        var shape = LaunchShapes.RowPerBlock(1) with { DynamicSharedBytes = 64 * 1024 };
        var shared = Assert.Throws<ArgumentException>(() => LaunchNoRows(device, function, shape, stream));
        Assert.Contains("65536 bytes of dynamic shared memory exceed its limit of 49152", shared.Message);
        device.SetMaxDynamicSharedBytes(function, 64 * 1024);
        LaunchNoRows(device, function, shape, stream);
        Assert.Equal(64 * 1024, device.GetAttributes(function).MaxDynamicSharedBytes);
        Assert.Throws<ArgumentOutOfRangeException>(() => device.SetMaxDynamicSharedBytes(function, 228 * 1024));

        var missing = Assert.Throws<E3.Interop.Emulator.EmuException>(() => device.LoadModule("no_such_kernel_file"));
        Assert.Contains("no_such_kernel_file", missing.Message);
        Assert.Throws<ArgumentException>(() => GpuDevices.Open("tpu"));
    }

    /// <summary>The device counts the bytes it hands out and takes back, and the most it held since the last reset.</summary>
    [Fact]
    public void AllocationsCountLiveAndPeakBytes()
    {
        _ = fixture.Device;
        var counted = _emu.Device.Allocations;
        long before = counted.LiveBytes;
        counted.ResetPeak();
        using (var a = _emu.Device.AllocateBuffer(1000))
        {
            using (var b = _emu.Device.AllocateBuffer(3000, Stream)) Assert.Equal(before + 4000, counted.LiveBytes);
            Assert.Equal(before + 1000, counted.LiveBytes);
            using var c = _emu.Device.AllocateBuffer(500);
            Assert.Equal(before + 4000, counted.PeakBytes);
        }
        Assert.Equal(before, counted.LiveBytes);
        counted.ResetPeak();
        Assert.Equal(before, counted.PeakBytes);
    }

    public void Dispose() => _emu.Dispose();

    // rmsnorm with no rows: the kernel returns at once, so only the launch checks matter.
    static void LaunchNoRows(IGpuDevice device, GpuFunction function, LaunchShape shape, GpuStream stream)
    {
        var args = new KernelArgs();
        args.Add(DevicePtr.Null);
        args.Add(DevicePtr.Null);
        args.Add(DevicePtr.Null);
        args.Add(0);
        args.Add(8);
        args.Add(1e-6f);
        device.Launch(function, shape, stream, args);
    }

    internal static Bf16[] ToBf16(float[] values) => values.Select(v => new Bf16(BFloat16.FromSingle(v))).ToArray();

    internal static float[] FromBf16(Bf16[] values) => values.Select(v => BFloat16.ToSingle(v.Bits)).ToArray();

    static double[] RmsNorm(float[] x, float[] w, int rows, int cols, double eps)
    {
        var y = new double[rows * cols];
        for (int r = 0; r < rows; r++)
        {
            double sum = 0;
            for (int c = 0; c < cols; c++) sum += (double)x[r * cols + c] * x[r * cols + c];
            double inv = 1 / Math.Sqrt(sum / cols + eps);
            for (int c = 0; c < cols; c++) y[r * cols + c] = w[c] * (x[r * cols + c] * inv);
        }
        return y;
    }

    /// <summary>Per-head RMSNorm then rotate_half RoPE in double; also |a|+|b| of each output's rotation pair.</summary>
    static (double[] Values, double[] PairScale) HeadNormRope(float[] x, float[] w, int tokens, int heads, int headDim, double theta, int T, int start, double eps)
    {
        var y = new double[x.Length];
        var scale = new double[x.Length];
        int half = headDim / 2;
        for (int t = 0; t < tokens; t++)
            for (int h = 0; h < heads; h++)
            {
                int o = (t * heads + h) * headDim;
                double sum = 0;
                for (int i = 0; i < headDim; i++) sum += (double)x[o + i] * x[o + i];
                double inv = 1 / Math.Sqrt(sum / headDim + eps);
                int position = start + t % T;
                for (int i = 0; i < half; i++)
                {
                    double a = w[i] * (x[o + i] * inv), b = w[i + half] * (x[o + i + half] * inv);
                    double angle = position * Math.Pow(theta, -2.0 * i / headDim);
                    y[o + i] = a * Math.Cos(angle) - b * Math.Sin(angle);
                    y[o + i + half] = b * Math.Cos(angle) + a * Math.Sin(angle);
                    scale[o + i] = scale[o + i + half] = Math.Abs(a) + Math.Abs(b);
                }
            }
        return (y, scale);
    }
}
