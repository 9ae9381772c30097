namespace E3.Pruning.Masking;

/// <summary>
/// The Gumbel noise of the layer-mask sampler, one fp64 value per (seed, step, sample, layer), identical to
/// <c>e3_gumbel_topk_noise</c> in kernels/gumbel_topk.cu.
/// <para>
/// Layout: Philox key = (seed low 32 bits, seed high 32 bits); counter = (layer / 2, sample, step low 32 bits,
/// step high 32 bits). One call serves two layers: layer i takes words 2*(i % 2) (high) and 2*(i % 2) + 1 (low)
/// of the output. The top 52 of those 64 bits give u = (x + 0.5) / 2^52, strictly inside (0, 1), and
/// g = -log(-log u). The noise is bit-identical wherever log is the same function (C# on glibc and the CPU
/// emulator both call glibc's log); CUDA's double log may differ by an ulp.
/// </para>
/// </summary>
public static class GumbelNoise
{
    private const double TwoToMinus52 = 1.0 / (1L << 52);

    /// <summary>The uniform draw u in [2^-53, 1 - 2^-53] for one layer.</summary>
    public static double Uniform(ulong seed, long step, int sample, int layer)
    {
        var block = Philox4x32.Generate((uint)layer >> 1, (uint)sample, (uint)step, (uint)((ulong)step >> 32), (uint)seed, (uint)(seed >> 32));
        var (high, low) = (layer & 1) == 0 ? (block.X0, block.X1) : (block.X2, block.X3);
        return ToUniform(high, low);
    }

    /// <summary>The Gumbel noise g = -log(-log u) for one layer.</summary>
    public static double Sample(ulong seed, long step, int sample, int layer) => FromUniform(Uniform(seed, step, sample, layer));

    /// <summary>Noise for layers 0 .. noise.Length-1 of one sample, one Philox call per pair of layers.</summary>
    public static void Fill(ulong seed, long step, int sample, Span<double> noise)
    {
        for (var layer = 0; layer < noise.Length; layer += 2)
        {
            var block = Philox4x32.Generate((uint)layer >> 1, (uint)sample, (uint)step, (uint)((ulong)step >> 32), (uint)seed, (uint)(seed >> 32));
            noise[layer] = FromUniform(ToUniform(block.X0, block.X1));
            if (layer + 1 < noise.Length)
                noise[layer + 1] = FromUniform(ToUniform(block.X2, block.X3));
        }
    }

    private static double ToUniform(uint high, uint low) => (((((ulong)high << 32) | low) >> 12) + 0.5) * TwoToMinus52;

    private static double FromUniform(double u) => -Math.Log(-Math.Log(u));
}
