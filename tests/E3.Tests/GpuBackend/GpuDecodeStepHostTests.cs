using E3.Backends;
using E3.Model;
using E3.Model.Decoder;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.GpuBackend;

/// <summary>
/// The host side of a GPU decode step, on a device that does no work (<see cref="HostOnlyGpuDevice"/>): each kept layer
/// costs the same fixed number of launches and GEMMs and a skipped one none, and a step allocates no managed memory
/// beyond the ids it returns, so a long generation never waits for the garbage collector.
/// </summary>
public sealed class GpuDecodeStepHostTests : IDisposable
{
    const int Layers = 4;
    readonly TempDir _dir = new();
    readonly HostOnlyGpuDevice _device = HostOnlyGpuDevice.H100();
    readonly E3.Backends.Gpu.GpuBackend _backend;
    readonly DecoderModel _model;

    public GpuDecodeStepHostTests()
    {
        RandomModel.Write(new RandomModelSpec
        {
            Architecture = Architecture.Qwen3, Layers = Layers, Hidden = 256, Heads = 4, KvHeads = 2, HeadDim = 64, Intermediate = 512,
            Vocab = 256, Seed = 4, Dtype = "bfloat16",
        }, _dir["m"]);
        _backend = new E3.Backends.Gpu.GpuBackend(_device, DType.BF16, ownsDevice: false);
        _model = DecoderModel.Load(_dir["m"], _backend);
    }

    public void Dispose()
    {
        _model.Dispose();
        _backend.Dispose();
        _dir.Dispose();
    }

    (long Launches, long Gemms) CountStep(LayerMask mask)
    {
        using var session = _model.StartSession(mask, 1, 64);
        session.ForwardArgMax([1, 2, 3]); // the prompt; the first call also converts each norm weight once
        session.ForwardArgMax([4]);
        _device.ResetCounts();
        session.ForwardArgMax([5]);
        return (_device.Launches, _device.Gemms);
    }

    [Fact]
    public void EachKeptLayerCostsTheSameLaunchesAndASkippedOneNone()
    {
        var counts = Enumerable.Range(0, Layers + 1)
            .Select(dropped => CountStep(LayerMask.Dropping(Layers, Enumerable.Range(0, dropped)))).ToArray();
        // Per kept layer: q and k norm + RoPE (one launch), the KV-cache append, decode attention and its combine, the
        // attention residual fused with the MLP norm, SwiGLU, and the gated residual fused with the next kept layer's
        // input norm or the final norm (7 launches); the q, k, v, o, gate, up and down projections (7 GEMMs). Outside the
        // layers: the embedding, the first kept layer's input norm (or, with none kept, the final norm) and the argmax;
        // the LM head.
        for (int kept = 0; kept <= Layers; kept++)
            Assert.Equal((7L * kept + 3, 7L * kept + 1), counts[Layers - kept]);
        // Which layers are dropped does not matter, only how many.
        Assert.Equal(counts[2], CountStep(LayerMask.Dropping(Layers, [1, 3])));
    }

    [Fact]
    public void ADecodeStepAllocatesOnlyTheIdsItReturns()
    {
        using var session = _model.StartSession(LayerMask.Dropping(Layers, [2]), 1, 256);
        session.ForwardArgMax([1, 2, 3]);
        for (int i = 0; i < 10; i++) session.ForwardArgMax([4]);
        const int Steps = 100;
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Steps; i++) session.ForwardArgMax([4 + i]);
        long perStep = (GC.GetAllocatedBytesForCurrentThread() - before) / Steps;
        // The argument array and the returned ids: two one-int arrays of 32 bytes each on 64-bit .NET.
        Assert.True(perStep <= 64, $"a decode step allocated {perStep} bytes");
    }
}
