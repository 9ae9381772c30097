using E3.Backends.Numerics;
using E3.Interop.Emulator;
using E3.Interop.Gpu;
using E3.Interop.Kernels;

namespace E3.Tests.Attention;

/// <summary>The results of one <see cref="AttentionKernels.Forward(DevicePointer{float}, DevicePointer{float}, DevicePointer{float}, DevicePointer{float}, DevicePointer{float}, DevicePointer{float}, DevicePointer{float}, DevicePointer{float}, in AttentionLayout, GpuStream)"/> call on the emulator, as fp32.</summary>
internal sealed record EmuAttentionResult(float[] Output, float[] Stats, float[] KCache, float[] VCache, IReadOnlyList<(string EntryPoint, LaunchShape Shape)> Launches,
    IReadOnlyList<(string EntryPoint, int Bytes)> SharedOptIns);

/// <summary>Uploads a problem in its dtype, runs the typed wrapper on the emulator and downloads everything.</summary>
internal static class EmuAttentionRun
{
    public static EmuAttentionResult Forward(EmuDevice emulator, AttentionProblem problem, int multiprocessors = 8, bool tensorCores = true)
    {
        var device = new EmuLaunchDevice(emulator, multiprocessors);
        using var kernels = new AttentionKernels(device, tensorCores);
        var layout = problem.Layout;
        bool bf16 = problem.Case.Bf16;
        using var q = Upload(emulator, problem.Q, bf16);
        using var k = Upload(emulator, problem.K, bf16);
        using var v = Upload(emulator, problem.V, bf16);
        using var kCache = Upload(emulator, problem.KCache, bf16);
        using var vCache = Upload(emulator, problem.VCache, bf16);
        using var output = emulator.Allocate((long)problem.Q.Length * (bf16 ? 2 : 4));
        output.Fill(0xff); // NaN in both dtypes: an element the kernel forgets cannot match
        int statsCount = layout.Batch * layout.TokensPerSequence * layout.Heads * 2;
        using var stats = emulator.Allocate(statsCount * sizeof(float));
        stats.Fill(0xff);
        using var workspace = emulator.Allocate(AttentionKernels.WorkspaceFloats(layout) * sizeof(float));

        var statsPointer = new DevicePointer<float>(stats.DevicePointer);
        var workspacePointer = new DevicePointer<float>(workspace.DevicePointer);
        if (bf16)
            kernels.Forward(Bf(q), Bf(k), Bf(v), Bf(kCache), Bf(vCache), Bf(output), statsPointer, workspacePointer, layout, default);
        else
            kernels.Forward(F(q), F(k), F(v), F(kCache), F(vCache), F(output), statsPointer, workspacePointer, layout, default);

        return new EmuAttentionResult(Download(output, problem.Q.Length, bf16), stats.Download<float>(statsCount),
            Download(kCache, problem.KCache.Length, bf16), Download(vCache, problem.VCache.Length, bf16), device.Launches, device.SharedOptIns);
    }

    public static EmuBuffer Upload(EmuDevice emulator, float[] values, bool bf16)
    {
        if (!bf16)
            return emulator.Upload<float>(values);
        var bits = new ushort[values.Length];
        BFloat16.FromSingle(values, bits);
        return emulator.Upload<ushort>(bits);
    }

    public static float[] Download(EmuBuffer buffer, int count, bool bf16)
    {
        if (!bf16)
            return buffer.Download<float>(count);
        var values = new float[count];
        BFloat16.ToSingle(buffer.Download<ushort>(count), values);
        return values;
    }

    private static DevicePointer<float> F(EmuBuffer buffer) => new(buffer.DevicePointer);

    private static DevicePointer<Bf16> Bf(EmuBuffer buffer) => new(buffer.DevicePointer);
}
