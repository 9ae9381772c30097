using E3.Backends.Cpu;

namespace E3.Backends.Gpu;

/// <summary>
/// A temporary <see cref="IAttentionOp"/>, used only until the attention kernel (AttentionKernels over
/// kernels/attention.cu) lands: downloads q, k, v and both caches, runs <see cref="CpuBackend.Attention"/> in fp32,
/// and uploads the updated caches and the output. Correct for fp32 and bf16 activations (bf16 values widen to
/// fp32 exactly, and the caches' bf16 values round-trip unchanged), but it moves the whole caches over the bus on
/// every call, so it is for tests and the emulator, not for speed.
/// </summary>
public sealed class HostAttentionFallback : IAttentionOp
{
    readonly GpuBackend _gpu;
    readonly CpuBackend _cpu = new();

    /// <summary>Runs attention for <paramref name="gpu"/> on the host.</summary>
    public HostAttentionFallback(GpuBackend gpu) => _gpu = gpu ?? throw new ArgumentNullException(nameof(gpu));

    /// <inheritdoc/>
    public void Run(in AttentionCall call)
    {
        using var q = ToHost(call.Q);
        using var k = ToHost(call.K);
        using var v = ToHost(call.V);
        using var kCache = ToHost(call.KCache);
        using var vCache = ToHost(call.VCache);
        using var output = (CpuTensor)_cpu.Allocate(DType.F32, call.Output.Shape);
        _cpu.Attention(q, k, v, kCache, vCache, call.Batch, call.TokensPerSequence, call.StartPosition, call.Heads, call.KvHeads,
            call.HeadDim, call.Scale, output);
        _gpu.Upload(kCache.AsSpan(), call.KCache);
        _gpu.Upload(vCache.AsSpan(), call.VCache);
        _gpu.Upload(output.AsSpan(), call.Output);
    }

    /// <summary>Nothing native is held; the CPU backend owns no resources.</summary>
    public void Dispose() => _cpu.Dispose();

    CpuTensor ToHost(GpuTensor t)
    {
        var host = (CpuTensor)_cpu.Allocate(DType.F32, t.Shape);
        _gpu.Download(t, host.AsSpan());
        return host;
    }
}
