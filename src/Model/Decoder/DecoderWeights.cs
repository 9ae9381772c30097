using E3.Backends;
using E3.Model.IO;

namespace E3.Model.Decoder;

/// <summary>How projection weights are kept on the backend. Norms and biases are always fp32.</summary>
public enum WeightPrecision
{
    /// <summary>As stored: F32 stays F32, BF16 stays BF16, F16 becomes F32.</summary>
    AsStored,
    /// <summary>Every projection converted to fp32, whatever it is stored as.</summary>
    F32,
    /// <summary>Every projection converted to bf16, whatever it is stored as.</summary>
    BF16,
}

/// <summary>One decoder layer's tensors on a backend.</summary>
internal sealed class LayerWeights : IDisposable
{
    public required Tensor InputNorm, PostAttentionNorm, Q, K, V, O, Gate, Up, Down;
    public Tensor? QBias, KBias, VBias, OBias, QNorm, KNorm;

    public IEnumerable<Tensor> All() =>
        new[] { InputNorm, PostAttentionNorm, Q, K, V, O, Gate, Up, Down, QBias, KBias, VBias, OBias, QNorm, KNorm }.OfType<Tensor>();

    public void Dispose()
    {
        foreach (var t in All()) t.Dispose();
    }
}

/// <summary>Every weight of a decoder model, uploaded once to one backend.</summary>
internal sealed class DecoderWeights : IDisposable
{
    public required Tensor Embedding { get; init; }
    public required Tensor FinalNorm { get; init; }
    /// <summary>The LM head: the embedding itself when tied.</summary>
    public required Tensor LmHead { get; init; }
    public required IReadOnlyList<LayerWeights> Layers { get; init; }
    public bool Tied { get; init; }

    /// <summary>Every tensor by its Hugging Face name (a tied head appears once, as the embedding), in checkpoint order.</summary>
    public IEnumerable<(string Name, Tensor Weight)> ByName()
    {
        yield return (WeightNames.Embedding, Embedding);
        for (int i = 0; i < Layers.Count; i++)
        {
            var l = Layers[i];
            string L(string s) => WeightNames.Layer(i, s);
            var tensors = new (string, Tensor?)[]
            {
                (L(WeightNames.InputNorm), l.InputNorm), (L(WeightNames.PostAttentionNorm), l.PostAttentionNorm),
                (L(WeightNames.QProj + ".weight"), l.Q), (L(WeightNames.KProj + ".weight"), l.K), (L(WeightNames.VProj + ".weight"), l.V),
                (L(WeightNames.OProj + ".weight"), l.O), (L(WeightNames.GateProj + ".weight"), l.Gate), (L(WeightNames.UpProj + ".weight"), l.Up),
                (L(WeightNames.DownProj + ".weight"), l.Down), (L(WeightNames.QProj + ".bias"), l.QBias), (L(WeightNames.KProj + ".bias"), l.KBias),
                (L(WeightNames.VProj + ".bias"), l.VBias), (L(WeightNames.OProj + ".bias"), l.OBias), (L(WeightNames.QNorm), l.QNorm),
                (L(WeightNames.KNorm), l.KNorm),
            };
            foreach (var (name, t) in tensors)
                if (t != null) yield return (name, t);
        }
        yield return (WeightNames.FinalNorm, FinalNorm);
        if (!Tied) yield return (WeightNames.LmHead, LmHead);
    }

    public long SizeInBytes => Layers.SelectMany(l => l.All()).Sum(t => t.SizeInBytes) + Embedding.SizeInBytes + FinalNorm.SizeInBytes
        + (Tied ? 0 : LmHead.SizeInBytes);

    /// <summary>Reads and checks every tensor the config requires, then uploads it. Nothing is silently initialised.</summary>
    public static DecoderWeights Load(SafeTensorsCheckpoint ckpt, ModelConfig config, IBackend backend, WeightPrecision precision, string source)
    {
        var uploaded = new List<Tensor>();
        try
        {
            // A layer the config does not have means config.json and the weights disagree on the depth; running the
            // first num_hidden_layers of them would silently drop the rest.
            var expected = WeightNames.Expected(config).Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
            foreach (string name in ckpt.Names)
            {
                if (WeightNames.LayerOf(name) is int layer && layer >= config.NumLayers)
                    throw new ModelFormatException(ckpt.Get(name).File, name, $"layer {layer} is beyond num_hidden_layers = {config.NumLayers} in {source}");
                // A bias or q/k norm the config says the model lacks would be dropped, and the model run without it:
                // config.json describes another architecture than the weights (a Qwen3 checkpoint under a Llama config).
                if (!expected.Contains(name) && WeightNames.IsArchitectureSpecific(name))
                    throw new ModelFormatException(ckpt.Get(name).File, name,
                        $"the checkpoint has it, but {source} (model_type {config.ModelType}) describes a model without it");
            }
            foreach (var (name, shape) in WeightNames.Expected(config))
            {
                if (!ckpt.Contains(name)) throw new ModelFormatException(source, name, "tensor missing from the checkpoint");
                var e = ckpt.Get(name);
                if (!e.Shape.SequenceEqual(shape))
                    throw new ModelFormatException(e.File, name, $"shape [{string.Join(", ", e.Shape)}] does not match config.json, which implies [{string.Join(", ", shape)}]");
            }

            Tensor Up(string name, bool isMatrix)
            {
                var e = ckpt.Get(name);
                DType src = e.ComputeType;
                DType store = !isMatrix ? DType.F32 : precision switch
                {
                    WeightPrecision.F32 => DType.F32,
                    WeightPrecision.BF16 => DType.BF16,
                    _ => src == DType.F16 ? DType.F32 : src,
                };
                var bytes = ckpt.GetBytes(name);
                if (NonFiniteScan.WeightProblem(bytes, src) is { } problem) throw new ModelFormatException(e.File, name, problem);
                var t = backend.Upload(bytes, src, e.Shape.Select(checked_int).ToArray(), store);
                uploaded.Add(t);
                return t;
            }
            Tensor? Opt(string name, bool cond) => cond ? Up(name, false) : null;

            var layers = new List<LayerWeights>();
            for (int i = 0; i < config.NumLayers; i++)
            {
                string L(string s) => WeightNames.Layer(i, s);
                layers.Add(new LayerWeights
                {
                    InputNorm = Up(L(WeightNames.InputNorm), false),
                    PostAttentionNorm = Up(L(WeightNames.PostAttentionNorm), false),
                    Q = Up(L(WeightNames.QProj + ".weight"), true),
                    K = Up(L(WeightNames.KProj + ".weight"), true),
                    V = Up(L(WeightNames.VProj + ".weight"), true),
                    O = Up(L(WeightNames.OProj + ".weight"), true),
                    Gate = Up(L(WeightNames.GateProj + ".weight"), true),
                    Up = Up(L(WeightNames.UpProj + ".weight"), true),
                    Down = Up(L(WeightNames.DownProj + ".weight"), true),
                    QBias = Opt(L(WeightNames.QProj + ".bias"), config.QkvBias),
                    KBias = Opt(L(WeightNames.KProj + ".bias"), config.QkvBias),
                    VBias = Opt(L(WeightNames.VProj + ".bias"), config.QkvBias),
                    OBias = Opt(L(WeightNames.OProj + ".bias"), config.OutputBias),
                    QNorm = Opt(L(WeightNames.QNorm), config.HasQkNorm),
                    KNorm = Opt(L(WeightNames.KNorm), config.HasQkNorm),
                });
            }
            var embedding = Up(WeightNames.Embedding, true);
            return new DecoderWeights
            {
                Embedding = embedding,
                FinalNorm = Up(WeightNames.FinalNorm, false),
                LmHead = config.TieWordEmbeddings ? embedding : Up(WeightNames.LmHead, true),
                Layers = layers,
                Tied = config.TieWordEmbeddings,
            };
        }
        catch
        {
            foreach (var t in uploaded) t.Dispose();
            throw;
        }

        static int checked_int(long v) => checked((int)v);
    }

    public void Dispose()
    {
        foreach (var l in Layers) l.Dispose();
        Embedding.Dispose();
        FinalNorm.Dispose();
        if (!Tied) LmHead.Dispose();
    }
}
