using E3.Interop.Gpu;
using E3.Interop.Kernels;

namespace E3.Backends.Gpu;

/// <summary>
/// Attention on the device through kernels/attention.cu: KV append plus flash-style prefill, or split-K decode
/// for one new position per sequence. The decode scratch is allocated once and grown only when a larger batch or
/// more heads ask for it, so a decode step allocates nothing.
/// </summary>
internal sealed class KernelAttention : IAttentionOp
{
    readonly GpuBackend _gpu;
    readonly AttentionKernels _kernels;
    DeviceBuffer? _workspace;

    public KernelAttention(GpuBackend gpu)
    {
        _gpu = gpu ?? throw new ArgumentNullException(nameof(gpu));
        _kernels = new AttentionKernels(gpu.Device);
    }

    public void Run(in AttentionCall call)
    {
        var layout = new AttentionLayout(call.Batch, call.TokensPerSequence, call.StartPosition, call.Capacity, call.Heads, call.KvHeads,
            call.HeadDim, call.Scale);
        var workspace = default(DevicePointer<float>);
        if (call.TokensPerSequence == 1)
        {
            long bytes = AttentionKernels.WorkspaceFloats(layout) * sizeof(float);
            if (_workspace is null || _workspace.Bytes < bytes)
            {
                _workspace?.Dispose();
                _workspace = _gpu.Device.AllocateBuffer(bytes);
            }
            workspace = new DevicePointer<float>(_workspace.Pointer);
        }
        if (call.Q.DType == DType.BF16)
            _kernels.Forward(call.Q.BF16, call.K.BF16, call.V.BF16, call.KCache.BF16, call.VCache.BF16, call.Output.BF16,
                default, workspace, layout, _gpu.Stream);
        else
            _kernels.Forward(call.Q.F32, call.K.F32, call.V.F32, call.KCache.F32, call.VCache.F32, call.Output.F32,
                default, workspace, layout, _gpu.Stream);
    }

    public void Dispose()
    {
        // Queued launches may still read the workspace: wait for the stream before freeing it.
        BestEffortRelease.Run(_gpu.Synchronize, () => _workspace?.Dispose(), _kernels.Dispose);
    }
}
