namespace E3.Interop.Kernels.Bench;

/// <summary>
/// The layer and workload sizes one <c>e3 bench kernels</c> run uses for every kernel family.
/// </summary>
/// <param name="Name">Preset name (<see cref="Names"/>).</param>
/// <param name="Hidden">Model width.</param>
/// <param name="Heads">Query heads.</param>
/// <param name="KvHeads">Key/value heads.</param>
/// <param name="HeadDim">Values per head.</param>
/// <param name="Intermediate">MLP width.</param>
/// <param name="Vocab">Vocabulary (LM head rows, KD and argmax row length).</param>
/// <param name="PrefillTokens">Tokens of one prefill (rows of the row-wise kernels and the GEMMs' M).</param>
/// <param name="DecodeBatch">Sequences of one decode step.</param>
/// <param name="DecodeContext">Keys each decode query attends to.</param>
/// <param name="KdRows">Token rows of the distillation kernels.</param>
/// <param name="KdTopK">Teacher entries per row of the sparse distillation kernel.</param>
/// <param name="GumbelSamples">Masks per Gumbel-TopK call (S).</param>
/// <param name="GumbelLayers">Layers per mask (L).</param>
/// <param name="GumbelKeep">Layers kept per mask (k).</param>
/// <param name="CopyBytes">Size of the device-to-device copy that measures the copy bandwidth.</param>
/// <param name="GemmSize">M = N = K of the bf16 GEMM that measures the GEMM rate.</param>
internal sealed record BenchShape(string Name, int Hidden, int Heads, int KvHeads, int HeadDim, int Intermediate, int Vocab,
    int PrefillTokens, int DecodeBatch, int DecodeContext, int KdRows, int KdTopK, int GumbelSamples, int GumbelLayers, int GumbelKeep,
    long CopyBytes, int GemmSize)
{
    /// <summary>Qwen3-8B layer shapes: hidden 4096, 32 x 128 heads, 8 kv heads, MLP 12288, vocab 151936.</summary>
    public static BenchShape Qwen3_8B { get; } = new("qwen3-8b", 4096, 32, 8, 128, 12288, 151936,
        PrefillTokens: 2048, DecodeBatch: 8, DecodeContext: 4096, KdRows: 512, KdTopK: 32, GumbelSamples: 4096, GumbelLayers: 64, GumbelKeep: 48,
        CopyBytes: 1L << 30, GemmSize: 8192);

    /// <summary>Qwen3-32B layer shapes: hidden 5120, 64 x 128 heads, 8 kv heads, MLP 25600, vocab 151936.</summary>
    public static BenchShape Qwen3_32B { get; } = Qwen3_8B with { Name = "qwen3-32b", Hidden = 5120, Heads = 64, Intermediate = 25600 };

    /// <summary>A scaled-down shape for the emulator and the CPU backend: the whole bench finishes in seconds.</summary>
    public static BenchShape Small { get; } = new("small", 256, 4, 2, 64, 768, 2048,
        PrefillTokens: 64, DecodeBatch: 2, DecodeContext: 128, KdRows: 8, KdTopK: 16, GumbelSamples: 16, GumbelLayers: 64, GumbelKeep: 48,
        CopyBytes: 16L << 20, GemmSize: 256);

    /// <summary>The preset names <see cref="Parse"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["qwen3-8b", "qwen3-32b", "small"];

    /// <summary>The preset called <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">Not one of <see cref="Names"/>.</exception>
    public static BenchShape Parse(string name) => name switch
    {
        "qwen3-8b" => Qwen3_8B,
        "qwen3-32b" => Qwen3_32B,
        "small" => Small,
        _ => throw new ArgumentException($"--shape: '{name}' is not one of {string.Join(", ", Names)}", nameof(name)),
    };
}
