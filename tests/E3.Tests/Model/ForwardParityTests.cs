using E3.Backends.Cpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Tests.Reference;
using E3.Tests.Support;
using TorchSharp;
using Xunit;

namespace E3.Tests.Model;

/// <summary>
/// The CPU forward against the independent TorchSharp reference (transformers' computation, written from torch ops),
/// on random Qwen3, Llama and Qwen2 models with GQA, tied and untied heads, fp32 and bf16 weights, and masks that
/// drop several layers or hold a fractional gate.
/// </summary>
public sealed class ForwardParityTests : IDisposable
{
    readonly TempDir _dir = new("e3-parity");
    readonly CpuBackend _cpu = new();

    // Projections with std 0.15 on hidden 64 give logits of order 1, so an absolute bound of 1e-4 is a relative
    // bound of ~1e-4 too, and no layer's contribution is too small to show.
    const double Std = 0.15;

    public static TheoryData<string, bool, bool, ReferenceStorage> Models() => new()
    {
        { "qwen3", false, false, ReferenceStorage.F32 },
        { "qwen3", true, false, ReferenceStorage.F32 },
        { "qwen3", false, true, ReferenceStorage.BF16 },
        { "qwen3", true, false, ReferenceStorage.F16 },
        { "llama", false, false, ReferenceStorage.F32 },
        { "llama", true, true, ReferenceStorage.BF16 },
        { "qwen2", false, false, ReferenceStorage.F32 },
        { "qwen2", true, false, ReferenceStorage.BF16 },
    };

    public static readonly float[][] Masks =
    [
        [1, 1, 1, 1, 1],
        [1, 0, 1, 0, 1],
        [0, 1, 0, 0, 1],
        [1, 0.5f, 0, 1, 0.25f],
    ];

    string Write(string type, bool tied, bool bias, ReferenceStorage storage, int shards = 1)
    {
        string folder = _dir[$"{type}-{tied}-{bias}-{storage}-{shards}"];
        var config = new ReferenceConfig(type, VocabSize: 101, HiddenSize: 64, IntermediateSize: 96, NumHiddenLayers: 5,
            NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: type == "qwen3" ? 24 : 16, RmsNormEps: 1e-6,
            RopeTheta: type == "llama" ? 10000 : 1_000_000, TieWordEmbeddings: tied, AttentionBias: bias);
        ReferenceCheckpointWriter.WriteRandom(folder, config, seed: 11, storage, shards, Std);
        return folder;
    }

    static long[] Tokens(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (long)r.Next(101)).ToArray();
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void CpuForwardMatchesTheTorchReference(string type, bool tied, bool bias, ReferenceStorage storage)
    {
        string folder = Write(type, tied, bias, storage);
        using var model = DecoderModel.Load(folder, _cpu);
        // The reference reads the same file independently and upcasts bf16/f16 weights exactly to fp32, so both
        // compute in fp32 on identical weights: the 1e-4 fp32 bound applies to every storage type.
        using var reference = ReferenceCheckpoint.Load(folder, torch.ScalarType.Float32);
        long[] tokens = Tokens(13, 5);
        foreach (var gates in Masks)
        {
            float[] ours = model.Forward(tokens.Select(t => (int)t).ToArray(), new LayerMask(gates));
            using var theirs = TorchReferenceDecoder.Forward(reference, tokens, gates);
            float[] expected = theirs.data<float>().ToArray();
            float scale = expected.Max(MathF.Abs);
            Assert.True(scale > 0.5f, $"logits too small ({scale}) for an absolute bound to mean anything");
            float diff = MaxAbsDiff(expected, ours);
            Assert.True(diff <= 1e-4f, $"{type} tied={tied} bias={bias} {storage} gates=[{string.Join(",", gates)}]: max |Δlogit| = {diff}");
        }
    }

    [Fact]
    public void Bf16WeightsAreAsAccurateAsATorchBf16Forward()
    {
        // Flash-attention's way of justifying a low-precision bound: an implementation is acceptable when its error
        // against a float64 oracle is no worse than twice that of the framework's own computation in that precision.
        string folder = Write("qwen3", false, false, ReferenceStorage.BF16);
        using var model = DecoderModel.Load(folder, _cpu);
        using var f64 = ReferenceCheckpoint.Load(folder, torch.ScalarType.Float64);
        using var f32 = ReferenceCheckpoint.Load(folder, torch.ScalarType.Float32);
        long[] tokens = Tokens(11, 6);
        float[] gates = [1, 0, 1, 1, 0.5f];
        using var oracle = TorchReferenceDecoder.Forward(f64, tokens, gates, torch.ScalarType.Float64);
        using var torchBf16 = TorchReferenceDecoder.Forward(f32, tokens, gates, torch.ScalarType.BFloat16);
        float[] exact = oracle.to_type(torch.ScalarType.Float32).data<float>().ToArray();
        float[] torchErr = torchBf16.to_type(torch.ScalarType.Float32).data<float>().ToArray();
        float[] ours = model.Forward(tokens.Select(t => (int)t).ToArray(), new LayerMask(gates));
        float ourError = MaxAbsDiff(exact, ours), torchError = MaxAbsDiff(exact, torchErr);
        Assert.True(ourError <= 2 * torchError, $"E3 bf16-weight error {ourError} vs torch bf16 error {torchError}");
    }

    [Fact]
    public void ShardedCheckpointGivesTheSameLogits()
    {
        string single = Write("llama", false, false, ReferenceStorage.F32, shards: 1);
        string sharded = Write("llama", false, false, ReferenceStorage.F32, shards: 3);
        using var a = DecoderModel.Load(single, _cpu);
        using var b = DecoderModel.Load(sharded, _cpu);
        int[] t = Tokens(7, 8).Select(x => (int)x).ToArray();
        Assert.Equal(a.Forward(t), b.Forward(t));
    }

    [Fact]
    public void BatchedForwardMatchesTheReferenceBatch()
    {
        string folder = Write("qwen3", false, false, ReferenceStorage.F32);
        using var model = DecoderModel.Load(folder, _cpu);
        using var reference = ReferenceCheckpoint.Load(folder, torch.ScalarType.Float32);
        var batch = new long[3, 6];
        var r = new Random(3);
        for (int b = 0; b < 3; b++) for (int t = 0; t < 6; t++) batch[b, t] = r.Next(101);
        float[] gates = [1, 0, 1, 1, 1];
        using var theirs = TorchReferenceDecoder.Forward(reference, batch, gates);
        using var session = model.StartSession(new LayerMask(gates), 3, 6);
        float[] ours = session.Forward(batch.Cast<long>().Select(x => (int)x).ToArray(), LogitsMode.All);
        Assert.True(MaxAbsDiff(theirs.data<float>().ToArray(), ours) <= 1e-4f);
    }

    static float MaxAbsDiff(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        float m = 0;
        for (int i = 0; i < a.Length; i++) m = MathF.Max(m, MathF.Abs(a[i] - b[i]));
        return m;
    }

    public void Dispose()
    {
        _cpu.Dispose();
        _dir.Dispose();
    }
}
