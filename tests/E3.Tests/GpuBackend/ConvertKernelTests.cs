using E3.Backends;
using E3.Backends.Numerics;
using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Tests.Emulator;
using Xunit;

namespace E3.Tests.GpuBackend;

/// <summary>
/// kernels/convert.cu on the emulator against the host's <see cref="BFloat16"/> (which the backend used before the
/// conversion moved to the device): the same bits, ties, NaN, infinities and subnormals included; and the backend's
/// fp32 widening of a bf16 weight follows each upload.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class ConvertKernelTests(EmuFixture fixture) : IDisposable
{
    readonly EmuDeviceScope _emu = EmuDeviceScope.After(fixture);

    static float[] Values()
    {
        var random = new Random(3);
        var special = new[]
        {
            0f, -0f, 1f, -1f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, -float.NaN, float.MaxValue, float.MinValue,
            float.Epsilon, -float.Epsilon, 1e-40f, BitConverter.UInt32BitsToSingle(0x3f808000u), BitConverter.UInt32BitsToSingle(0x3f818000u),
            BitConverter.UInt32BitsToSingle(0x7f7fffffu), BitConverter.UInt32BitsToSingle(0x3f80ffffu), BitConverter.UInt32BitsToSingle(0x7fc01234u),
        };
        var values = new float[1000 + special.Length];
        special.CopyTo(values, 0);
        for (int i = special.Length; i < values.Length; i++) values[i] = (float)((random.NextDouble() - 0.5) * Math.Pow(10, random.Next(-30, 30)));
        return values;
    }

    [Fact]
    public void DeviceConversionsGiveTheHostsBits()
    {
        using var kernels = new ConvertKernels(_emu.Device);
        var values = Values();
        var f32 = _emu.Upload<float>(values);
        var bf16 = _emu.Upload<ushort>(new ushort[values.Length]);
        kernels.ToBf16(f32, new DevicePointer<Bf16>(bf16.Raw), values.Length, _emu.Stream.Handle);
        var narrowed = _emu.Download(bf16, values.Length);
        var want = new ushort[values.Length];
        BFloat16.FromSingle(values, want);
        Assert.Equal(want, narrowed);

        var widened = _emu.Upload<float>(new float[values.Length]);
        kernels.ToF32(new DevicePointer<Bf16>(bf16.Raw), widened, values.Length, _emu.Stream.Handle);
        var back = _emu.Download(widened, values.Length);
        for (int i = 0; i < values.Length; i++)
            Assert.Equal(BitConverter.SingleToUInt32Bits(BFloat16.ToSingle(want[i])), BitConverter.SingleToUInt32Bits(back[i]));
    }

    [Fact]
    public void TheFp32WideningOfABf16WeightFollowsEachUpload()
    {
        // fp32 activations read a bf16 weight widened to fp32; after the weight is rewritten (an optimizer step) the
        // next product must use the new values.
        using var backend = new E3.Backends.Gpu.GpuBackend(_emu.Device, DType.F32, ownsDevice: false);
        var first = new float[] { 1.5f, -2f, 0.25f, 3f, 1f, 1f };
        var weightBits = new ushort[first.Length];
        BFloat16.FromSingle(first, weightBits);
        using var w = backend.Upload(System.Runtime.InteropServices.MemoryMarshal.AsBytes(weightBits.AsSpan()), DType.BF16, [2, 3], DType.BF16);
        using var x = backend.Allocate(DType.F32, 1, 3);
        using var y = backend.Allocate(DType.F32, 1, 2);
        backend.Upload([1f, 2f, 4f], x);
        var result = new float[2];
        backend.MatMul(x, w, null, y);
        backend.Download(y, result);
        Assert.Equal([1.5f - 4f + 1f, 3f + 2f + 4f], result);
        backend.Upload([2f, 0f, 0f, 0f, 0f, 1.01171875f], w); // the last, halfway between 1.0078125 and 1.015625, rounds to even: 1.015625
        backend.MatMul(x, w, null, y);
        backend.Download(y, result);
        Assert.Equal([2f, 4f * 1.015625f], result);
    }

    public void Dispose() => _emu.Dispose();
}
