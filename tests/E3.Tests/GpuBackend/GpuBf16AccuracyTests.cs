using E3.Backends;
using E3.Model;
using E3.Model.Decoder;
using E3.Tests.Emulator;
using E3.Tests.Reference;
using E3.Tests.Support;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;

namespace E3.Tests.GpuBackend;

/// <summary>
/// The GPU backend's inference mode (bf16 activations, fp32 accumulation), which `e3 forward --device cuda` and the
/// speedup bench run, against a float64 oracle of the same bf16 weights, with the framework's own bf16 forward as the
/// yardstick (the TorchSharp reference rounds where transformers does). This is the criterion
/// bench/gpu/hf_parity.py applies on a GPU against transformers itself: no more than twice torch's bf16 error, on the
/// largest and on the mean logit error, with layers dropped and without. The emulator runs the same kernel source.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class GpuBf16AccuracyTests : IDisposable
{
    readonly TempDir _dir = new("e3-gpubf16");
    readonly EmuDeviceScope _emu;
    readonly E3.Backends.Gpu.GpuBackend _backend;
    readonly ITestOutputHelper _log;

    public GpuBf16AccuracyTests(EmuFixture fixture, ITestOutputHelper log)
    {
        _emu = EmuDeviceScope.After(fixture);
        _backend = new E3.Backends.Gpu.GpuBackend(_emu.Device, DType.BF16, ownsDevice: false);
        _log = log;
    }

    [Theory]
    [InlineData("qwen3", new float[] { 1, 1, 1, 1, 1, 1 })]
    [InlineData("qwen3", new float[] { 1, 0, 1, 1, 0, 1 })]
    [InlineData("llama", new float[] { 1, 1, 0, 1, 1, 0 })]
    [InlineData("qwen2", new float[] { 0, 1, 1, 1, 1, 1 })]
    public void Bf16ActivationsAreAsAccurateAsATorchBf16Forward(string type, float[] gates)
    {
        string folder = _dir[type];
        var config = new ReferenceConfig(type, VocabSize: 301, HiddenSize: 128, IntermediateSize: 256, NumHiddenLayers: 6,
            NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 32, RmsNormEps: 1e-6, RopeTheta: 1_000_000, TieWordEmbeddings: false,
            AttentionBias: false);
        if (!Directory.Exists(folder)) ReferenceCheckpointWriter.WriteRandom(folder, config, seed: 5, ReferenceStorage.BF16, projectionStd: 0.08);
        var random = new Random(7);
        long[] tokens = Enumerable.Range(0, 40).Select(_ => (long)random.Next(config.VocabSize)).ToArray();

        using var f64 = ReferenceCheckpoint.Load(folder, torch.ScalarType.Float64);
        using var f32 = ReferenceCheckpoint.Load(folder, torch.ScalarType.Float32);
        using var oracle = TorchReferenceDecoder.Forward(f64, tokens, gates, torch.ScalarType.Float64);
        using var torchBf16 = TorchReferenceDecoder.Forward(f32, tokens, gates, torch.ScalarType.BFloat16);
        double[] exact = oracle.data<double>().ToArray();
        float[] theirs = torchBf16.to_type(torch.ScalarType.Float32).data<float>().ToArray();
        using var model = DecoderModel.Load(folder, _backend);
        float[] ours = model.Forward(tokens.Select(t => (int)t).ToArray(), new LayerMask(gates));

        var (ourMax, ourMean) = Errors(exact, ours);
        var (torchMax, torchMean) = Errors(exact, theirs);
        _log.WriteLine($"{type} [{string.Join(",", gates)}]: e3 max {ourMax:E3} mean {ourMean:E3}; torch bf16 max {torchMax:E3} mean {torchMean:E3}");
        // torch's own bf16 error must be a bf16-sized error, or "twice it" would bound nothing.
        Assert.InRange(torchMean, 1e-4, 5e-2);
        Assert.True(ourMax <= 2 * torchMax, $"max relative error {ourMax:E3} is more than twice torch bf16's {torchMax:E3}");
        Assert.True(ourMean <= 2 * torchMean, $"mean relative error {ourMean:E3} is more than twice torch bf16's {torchMean:E3}");
    }

    /// <summary>Max and mean |x − exact|, each over the same statistic of |exact|: hf_parity.py's max_rel and mean_rel.</summary>
    static (double Max, double Mean) Errors(double[] exact, float[] x)
    {
        Assert.Equal(exact.Length, x.Length);
        double maxDiff = 0, sumDiff = 0, maxScale = 0, sumScale = 0;
        for (int i = 0; i < x.Length; i++)
        {
            double d = Math.Abs(x[i] - exact[i]);
            maxDiff = Math.Max(maxDiff, d);
            sumDiff += d;
            maxScale = Math.Max(maxScale, Math.Abs(exact[i]));
            sumScale += Math.Abs(exact[i]);
        }
        return (maxDiff / maxScale, sumDiff / sumScale);
    }

    public void Dispose()
    {
        _backend.Dispose();
        _emu.Dispose();
        _dir.Dispose();
    }
}
