using E3.Backends.Numerics;
using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Tests.Emulator;
using Xunit;

namespace E3.Tests.GpuBackend;

/// <summary>
/// The fused end of a decoder layer (<c>e3_gated_residual_rmsnorm_*</c>) against the two kernels it replaces, the gated
/// residual and then the RMSNorm, on the emulator: the same bits for h and y, in fp32 and bf16, on the 16-byte vector
/// path and the scalar one, for a blending gate and for gate 1, and with h sharing its buffer with a.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class GatedResidualRmsNormTests(EmuFixture fixture) : IDisposable
{
    readonly EmuDeviceScope _emu = EmuDeviceScope.After(fixture);

    GpuStream Stream => _emu.Stream.Handle;

    public void Dispose() => _emu.Dispose();

    DevicePointer<T> Put<T>(T[] values, int offset) where T : unmanaged => _emu.UploadAt(values, offset);

    public static TheoryData<int, int, float> Cases => new()
    {
        { 4096, 0, 0.625f },  // Qwen3-8B rows, aligned: the vector path
        { 4096, 1, 0.625f },  // offset by one element: the scalar path
        { 4096, 0, 1f },      // gate 1: a + m itself, h not read
        { 100, 0, 0.3f },     // not a multiple of 8: the scalar path from aligned buffers
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Bf16FusedEqualsResidualThenNorm(int cols, int offset, float gate)
    {
        const int rows = 5;
        int n = rows * cols;
        var h = EmuGpuDeviceTests.ToBf16(Approx.Random(n, 1, 2f));
        var a = EmuGpuDeviceTests.ToBf16(Approx.Random(n, 2, 2f));
        var m = EmuGpuDeviceTests.ToBf16(Approx.Random(n, 3, 1f));
        var w = EmuGpuDeviceTests.ToBf16(Approx.Random(cols, 4, 1f));
        using var norm = new RmsNormKernels(_emu.Device);
        using var residual = new ResidualKernels(_emu.Device);

        var hUnfused = Put(h, offset);
        var yUnfused = Put(new Bf16[n], offset);
        residual.Gated(hUnfused, Put(a, offset), Put(m, offset), gate, n, Stream);
        norm.Forward(hUnfused, Put(w, offset), yUnfused, rows, cols, 1e-6f, Stream);

        var hFused = Put(h, offset);
        var yFused = Put(new Bf16[n], offset);
        norm.GatedResidualForward(hFused, Put(a, offset), Put(m, offset), gate, Put(w, offset), yFused, rows, cols, 1e-6f, Stream);

        Assert.Equal(Bits(_emu.Download(hUnfused, n)), Bits(_emu.Download(hFused, n)));
        Assert.Equal(Bits(_emu.Download(yUnfused, n)), Bits(_emu.Download(yFused, n)));
        Assert.NotEqual(Bits(h), Bits(_emu.Download(hFused, n)));
    }

    [Theory]
    [InlineData(0.625f)]
    [InlineData(1f)]
    public void F32FusedEqualsResidualThenNormWithHSharingA(float gate)
    {
        const int rows = 3, cols = 96;
        int n = rows * cols;
        float[] h = Approx.Random(n, 5, 2f), m = Approx.Random(n, 6, 1f), w = Approx.Random(cols, 7, 1f);
        using var norm = new RmsNormKernels(_emu.Device);
        using var residual = new ResidualKernels(_emu.Device);

        // h is also a: h <- h + gate * ((h + m) - h).
        var hUnfused = Put(h, 0);
        var yUnfused = Put(new float[n], 0);
        residual.Gated(hUnfused, hUnfused, Put(m, 0), gate, n, Stream);
        norm.Forward(hUnfused, Put(w, 0), yUnfused, rows, cols, 1e-6f, Stream);

        var hFused = Put(h, 0);
        var yFused = Put(new float[n], 0);
        norm.GatedResidualForward(hFused, hFused, Put(m, 0), gate, Put(w, 0), yFused, rows, cols, 1e-6f, Stream);

        Assert.Equal(_emu.Download(hUnfused, n), _emu.Download(hFused, n));
        Assert.Equal(_emu.Download(yUnfused, n), _emu.Download(yFused, n));
    }

    static ushort[] Bits(Bf16[] values) => values.Select(v => v.Bits).ToArray();
}
