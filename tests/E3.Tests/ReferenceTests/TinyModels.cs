using E3.Tests.Reference;

namespace E3.Tests.ReferenceTests;

/// <summary>A scratch folder under the temp directory, deleted on dispose.</summary>
internal sealed class ScratchFolder : IDisposable
{
    public ScratchFolder() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "e3-ref-" + Guid.NewGuid().ToString("N"));

    public void Dispose() => Directory.Delete(Path, recursive: true);
}

/// <summary>The tiny configurations the oracle is validated on.</summary>
internal static class TinyModels
{
    /// <summary>
    /// 2 layers, 4 query heads over 2 kv heads (GQA groups of 2), head_dim 8, vocab 50. Qwen3 uses hidden 24 so that
    /// its explicit head_dim (heads·head_dim = 32 ≠ hidden) is exercised; Llama/Qwen2 use hidden 32 = heads·head_dim.
    /// </summary>
    public static ReferenceConfig Config(string modelType, bool tied, bool attentionBias = false, int layers = 2, int hidden = 0) => new(
        modelType,
        VocabSize: 50,
        HiddenSize: hidden > 0 ? hidden : modelType == "qwen3" ? 24 : 32,
        IntermediateSize: 40,
        NumHiddenLayers: layers,
        NumAttentionHeads: 4,
        NumKeyValueHeads: 2,
        HeadDim: 8,
        RmsNormEps: 1e-6,
        RopeTheta: modelType == "qwen3" ? 1_000_000 : 10_000,
        TieWordEmbeddings: tied,
        AttentionBias: attentionBias);

    public static long[] Tokens(int count, int seed, int vocab = 50)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (long)random.Next(vocab)).ToArray();
    }
}
