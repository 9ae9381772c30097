using E3.Backends.Cpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Model;

/// <summary>
/// Properties of the CPU decoder that need no external oracle: the KV cache, batching and layer skipping must
/// not change what a plain full-sequence forward computes, and a skipped layer must do no work.
/// </summary>
public sealed class DecoderBehaviourTests : IDisposable
{
    readonly TempDir _dir = new();
    readonly CpuBackend _cpu = new();

    DecoderModel Make(Architecture arch = Architecture.Qwen3, int layers = 4, bool tie = false, int seed = 3)
    {
        string path = _dir[$"{arch}-{layers}-{tie}-{seed}"];
        if (!Directory.Exists(path))
            RandomModel.Write(new RandomModelSpec { Architecture = arch, Layers = layers, Hidden = 48, Heads = 4, KvHeads = 2, HeadDim = 12, Intermediate = 96, Vocab = 97, TieEmbeddings = tie, Seed = seed, InitStd = 0.2f }, path);
        return DecoderModel.Load(path, _cpu);
    }

    static int[] Tokens(int n, int vocab, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => r.Next(vocab)).ToArray();
    }

    [Fact]
    public void APreparedCallAllocatesNothingAndComputesTheSame()
    {
        // The speedup bench prepares each phase before its clock starts; a call it times must not allocate.
        Make(); // writes the model folder
        using var tracking = new E3.Backends.AllocationTrackingBackend(_cpu);
        using var m = DecoderModel.Load(_dir[$"{Architecture.Qwen3}-4-{false}-3"], tracking);
        int[] prompt = Tokens(2 * 7, m.Config.VocabSize, 5), step = Tokens(2, m.Config.VocabSize, 6);
        var mask = LayerMask.Dropping(4, [1]);

        using var unprepared = m.StartSession(mask, 2, 8);
        long before = tracking.Allocations;
        var wantPrefill = unprepared.Forward(prompt, LogitsMode.Last);
        Assert.True(tracking.Allocations > before, "an unprepared first call allocates its buffers"); // so the check below can fail
        var wantStep = unprepared.Forward(step, LogitsMode.Last);

        using var prepared = m.StartSession(mask, 2, 8);
        prepared.Prepare(7, LogitsMode.Last);
        before = tracking.Allocations;
        var gotPrefill = prepared.Forward(prompt, LogitsMode.Last);
        Assert.Equal(before, tracking.Allocations);
        prepared.Prepare(1, LogitsMode.Last);
        before = tracking.Allocations;
        var gotStep = prepared.Forward(step, LogitsMode.Last);
        Assert.Equal(before, tracking.Allocations);
        Assert.Equal(wantPrefill, gotPrefill);
        Assert.Equal(wantStep, gotStep);
    }

    [Fact]
    public void TakingTheLogitsFreesEverythingElseOfTheSession()
    {
        // A distillation teacher keeps its logits for a whole training step; its caches and activations must go at once.
        Make();
        using var tracking = new E3.Backends.AllocationTrackingBackend(_cpu);
        using var m = DecoderModel.Load(_dir[$"{Architecture.Qwen3}-4-{false}-3"], tracking);
        int[] tokens = Tokens(2 * 6, m.Config.VocabSize, 9);
        var mask = LayerMask.Dropping(4, [2]);
        long weights = tracking.LiveBytes;
        var session = m.StartSession(mask, 2, 6);
        var want = session.Forward(tokens);
        Assert.True(tracking.LiveBytes > weights + (long)want.Length * sizeof(float), "the session holds caches and activations beside its logits");

        using var logits = session.TakeLogits();
        Assert.Equal(weights + logits.SizeInBytes, tracking.LiveBytes);
        Assert.Equal(new[] { tokens.Length, m.Config.VocabSize }, logits.Shape);
        var got = new float[logits.ElementCount];
        _cpu.Download(logits, got);
        Assert.Equal(want, got);
        Assert.Throws<ObjectDisposedException>(() => session.Forward(tokens));
        Assert.Throws<ObjectDisposedException>(() => session.TakeLogits());
        session.Dispose(); // harmless, and leaves the taken logits alone
        Assert.False(logits.IsDisposed);

        using var fresh = m.StartSession(mask, 2, 6);
        Assert.Throws<InvalidOperationException>(() => fresh.TakeLogits()); // nothing computed yet
    }

    [Theory]
    [InlineData(Architecture.Qwen3)]
    [InlineData(Architecture.Llama)]
    [InlineData(Architecture.Qwen2)]
    public void IncrementalDecodingMatchesFullForward(Architecture arch)
    {
        using var m = Make(arch);
        int[] t = Tokens(9, m.Config.VocabSize, 1);
        var mask = LayerMask.Dropping(4, [2]);
        float[] full = m.Forward(t, mask);
        using var s = m.StartSession(mask, 1, t.Length);
        int v = m.Config.VocabSize;
        // Prefill 4 then one token at a time: every position must see exactly the same keys and values.
        float[] first = s.Forward(t.AsSpan(0, 4), LogitsMode.All);
        AssertClose(full.AsSpan(0, 4 * v), first, 2e-5f);
        for (int i = 4; i < t.Length; i++)
        {
            float[] step = s.Forward(t.AsSpan(i, 1), LogitsMode.Last);
            AssertClose(full.AsSpan(i * v, v), step, 2e-5f);
        }
    }

    [Fact]
    public void BatchedSequencesMatchSeparateRuns()
    {
        using var m = Make();
        int v = m.Config.VocabSize;
        int[] a = Tokens(6, v, 2), b = Tokens(6, v, 3);
        var mask = LayerMask.All(4);
        using var s = m.StartSession(mask, 2, 6);
        float[] both = s.Forward([.. a, .. b], LogitsMode.All);
        AssertClose(m.Forward(a), both.AsSpan(0, 6 * v), 2e-5f);
        AssertClose(m.Forward(b), both.AsSpan(6 * v, 6 * v), 2e-5f);
    }

    [Fact]
    public void SkippedLayersDoNoWork()
    {
        using var m = Make(layers: 6);
        var mask = LayerMask.Dropping(6, [1, 4]);
        m.Forward(Tokens(5, m.Config.VocabSize, 4), mask);
        Assert.Equal(new long[] { 1, 0, 1, 1, 0, 1 }, m.LayerExecutions.ToArray());
        using (var s = m.StartSession(mask, 1, 8))
        {
            s.Forward(Tokens(3, m.Config.VocabSize, 5), LogitsMode.Last);
            s.Forward([1], LogitsMode.Last);
        }
        Assert.Equal(new long[] { 3, 0, 3, 3, 0, 3 }, m.LayerExecutions.ToArray());
    }

    [Fact]
    public void DroppingEveryLayerLeavesEmbeddingNormAndHead()
    {
        using var m = Make(tie: true);
        int[] t = Tokens(3, m.Config.VocabSize, 6);
        float[] logits = m.Forward(t, LayerMask.Dropping(4, [0, 1, 2, 3]));
        // Independent scalar computation in double: lm_head(norm(embed(t))) with the tied embedding.
        using var ckpt = E3.Model.IO.SafeTensorsCheckpoint.Open(_dir[$"{Architecture.Qwen3}-4-True-3"]);
        float[] emb = ckpt.ReadFloat32(WeightNames.Embedding), norm = ckpt.ReadFloat32(WeightNames.FinalNorm);
        int h = m.Config.HiddenSize, v = m.Config.VocabSize;
        for (int i = 0; i < t.Length; i++)
        {
            double ms = 0;
            for (int j = 0; j < h; j++) ms += (double)emb[t[i] * h + j] * emb[t[i] * h + j];
            double inv = 1 / Math.Sqrt(ms / h + m.Config.RmsNormEps);
            for (int o = 0; o < v; o++)
            {
                double z = 0;
                for (int j = 0; j < h; j++) z += norm[j] * emb[t[i] * h + j] * inv * emb[o * h + j];
                Assert.True(Math.Abs(z - logits[i * v + o]) < 1e-5, $"token {i} logit {o}: {logits[i * v + o]} vs {z}");
            }
        }
    }

    [Fact]
    public void GateOneEqualsUngatedAndZeroEqualsDropped()
    {
        using var m = Make();
        int[] t = Tokens(5, m.Config.VocabSize, 7);
        float[] all = m.Forward(t);
        float[] gatedOnes = m.Forward(t, new LayerMask([1f, 1f, 1f, 1f]));
        Assert.Equal(all, gatedOnes); // gate 1 takes the exact ungated path
        float[] half = m.Forward(t, new LayerMask([1f, 0.5f, 1f, 1f]));
        float[] none = m.Forward(t, LayerMask.Dropping(4, [1]));
        // A fractional gate lies strictly between: it differs from both ends.
        Assert.True(MaxDiff(half, all) > 1e-4 && MaxDiff(half, none) > 1e-4);
    }

    [Fact]
    public void TokenOutsideVocabularyIsAClearError()
    {
        using var m = Make();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => m.Forward([1, 2, 97]));
        Assert.Contains("tokens[2] = 97", e.Message);
        Assert.Contains("vocab_size = 97", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Forward([-1]));
    }

    [Fact]
    public void MaskIndicesOutOfRangeAreErrors()
    {
        var e = Assert.Throws<ArgumentException>(() => LayerMask.ParseDropList(4, "1,4"));
        Assert.Contains("--drop: layer 4 is out of range for a model with 4 layers", e.Message);
        Assert.Throws<FormatException>(() => LayerMask.ParseDropList(4, "1,x"));
        Assert.Throws<FormatException>(() => LayerMask.ParseDropList(4, "1,,2")); // a typo, not the list 1,2
        Assert.Throws<ArgumentOutOfRangeException>(() => LayerMask.Dropping(4, [4]));
        Assert.Throws<ArgumentException>(() => new LayerMask([1f, float.NaN]));
        Assert.Equal(new[] { 24, 25, 26, 27, 28, 29, 30, 31 }, LayerMask.DropLast(32, 0.25).Dropped.ToArray());
    }

    [Fact]
    public void SessionCapacityIsEnforced()
    {
        using var m = Make();
        using var s = m.StartSession(LayerMask.All(4), 1, 4);
        s.Forward([1, 2, 3], LogitsMode.None);
        var e = Assert.Throws<InvalidOperationException>(() => s.Forward([1, 2], LogitsMode.Last));
        Assert.Contains("capacity 4", e.Message);
    }

    [Fact]
    public void GreedyGenerationEqualsArgmaxOfRepeatedFullForwards()
    {
        using var m = Make();
        int[] prompt = Tokens(4, m.Config.VocabSize, 8);
        int[] gen = GreedyGenerator.Generate(m, prompt, 5);
        var seq = prompt.ToList();
        int v = m.Config.VocabSize;
        for (int i = 0; i < 5; i++)
        {
            float[] z = m.Forward(seq.ToArray());
            seq.Add(GreedyGenerator.ArgMax(z.AsSpan((seq.Count - 1) * v, v)));
        }
        Assert.Equal(seq.Skip(4), gen);
    }

    [Fact]
    public void TensorShapeDisagreeingWithConfigIsAClearError()
    {
        using (Make()) { }
        string path = _dir[$"{Architecture.Qwen3}-4-False-3"];
        string config = Path.Combine(path, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"intermediate_size\": 96", "\"intermediate_size\": 80"));
        var e = Assert.Throws<ModelFormatException>(() => DecoderModel.Load(path, _cpu));
        Assert.Contains("model.layers.0.mlp.gate_proj.weight", e.Message);
        Assert.Contains("[96, 48]", e.Message);
        Assert.Contains("[80, 48]", e.Message);
    }

    [Fact]
    public void MissingTensorIsAClearError()
    {
        // An untied config over the weights of a tied model: lm_head.weight is required and absent.
        var spec = new RandomModelSpec { Layers = 2, Hidden = 16, Heads = 2, KvHeads = 1, HeadDim = 8, Intermediate = 32, Vocab = 20 };
        RandomModel.Write(spec, _dir["untied"]);
        RandomModel.Write(spec with { TieEmbeddings = true }, _dir["tied"]);
        File.Copy(Path.Combine(_dir["tied"], "model.safetensors"), Path.Combine(_dir["untied"], "model.safetensors"), true);
        var e = Assert.Throws<ModelFormatException>(() => DecoderModel.Load(_dir["untied"], _cpu));
        Assert.Contains("lm_head.weight", e.Message);
        Assert.Contains("missing", e.Message);
    }

    [Fact]
    public void WeightsOfMoreLayersThanTheConfigSaysAreAClearError()
    {
        // A config that says 3 layers over a 4-layer checkpoint would otherwise run 3 and silently drop the fourth.
        var spec = new RandomModelSpec { Layers = 4, Hidden = 16, Heads = 2, KvHeads = 1, HeadDim = 8, Intermediate = 32, Vocab = 20 };
        string path = _dir["deeper"];
        RandomModel.Write(spec, path);
        string config = Path.Combine(path, "config.json");
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(config))!.AsObject();
        json["num_hidden_layers"] = 3;
        if (json["layer_types"] is System.Text.Json.Nodes.JsonArray types) types.RemoveAt(3);
        File.WriteAllText(config, json.ToJsonString());
        var e = Assert.Throws<ModelFormatException>(() => DecoderModel.Load(path, _cpu));
        Assert.Equal(Path.Combine(path, "model.safetensors"), e.File);
        Assert.StartsWith("model.layers.3.", e.Field);
        Assert.Contains("layer 3 is beyond num_hidden_layers = 3", e.Message);
    }

    [Theory]
    [InlineData(Architecture.Qwen3, "llama", "self_attn.q_norm.weight")] // a Qwen3 checkpoint under a Llama config: no q/k norm
    [InlineData(Architecture.Qwen2, "qwen3", "self_attn.q_proj.bias")]  // Qwen2's q/k/v biases under a Qwen3 config
    public void TensorsTheConfigSaysTheModelLacksAreAClearError(Architecture written, string claimed, string tensor)
    {
        var spec = new RandomModelSpec { Architecture = written, Layers = 2, Hidden = 16, Heads = 2, KvHeads = 1, HeadDim = 8, Intermediate = 32, Vocab = 20 };
        string path = _dir[$"claimed-{claimed}"];
        RandomModel.Write(spec, path);
        string config = Path.Combine(path, "config.json");
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(config))!.AsObject();
        json["model_type"] = claimed;
        json["attention_bias"] = false;
        json.Remove("layer_types");
        File.WriteAllText(config, json.ToJsonString());
        var e = Assert.Throws<ModelFormatException>(() => DecoderModel.Load(path, _cpu));
        Assert.EndsWith(tensor, e.Field);
        Assert.Contains($"model_type {claimed}) describes a model without it", e.Message);
    }

    [Fact]
    public void RandomModelsAreReproducibleFromTheirSeed()
    {
        var spec = new RandomModelSpec { Layers = 2, Hidden = 16, Heads = 2, KvHeads = 1, HeadDim = 8, Intermediate = 32, Vocab = 20, Seed = 9 };
        RandomModel.Write(spec, _dir["seed-a"]);
        RandomModel.Write(spec, _dir["seed-b"]);
        RandomModel.Write(spec with { Seed = 10 }, _dir["seed-c"]);
        byte[] Bytes(string d) => File.ReadAllBytes(Path.Combine(_dir[d], "model.safetensors"));
        Assert.Equal(Bytes("seed-a"), Bytes("seed-b"));
        Assert.NotEqual(Bytes("seed-a"), Bytes("seed-c"));
    }

    [Fact]
    public void UnknownModelTypeIsAClearError()
    {
        string path = _dir["gpt"];
        RandomModel.Write(new RandomModelSpec { Layers = 1, Hidden = 16, Heads = 2, KvHeads = 1, HeadDim = 8, Intermediate = 32, Vocab = 20 }, path);
        string config = Path.Combine(path, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"model_type\": \"qwen3\"", "\"model_type\": \"gpt_neox\""));
        var e = Assert.Throws<ModelFormatException>(() => DecoderModel.Load(path, _cpu));
        Assert.Contains("gpt_neox", e.Message);
        Assert.Contains("config.json", e.Message);
    }

    static float MaxDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        float m = 0;
        for (int i = 0; i < a.Length; i++) m = MathF.Max(m, MathF.Abs(a[i] - b[i]));
        return m;
    }

    static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, float tol)
    {
        Assert.Equal(expected.Length, actual.Length);
        float d = MaxDiff(expected, actual);
        Assert.True(d <= tol, $"max abs difference {d} exceeds {tol}");
    }

    public void Dispose()
    {
        _cpu.Dispose();
        _dir.Dispose();
    }
}
