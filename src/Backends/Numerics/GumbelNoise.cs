using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace E3.Backends.Numerics;

/// <summary>
/// The Gumbel noise of the layer-mask sampler, one fp64 value per (seed, step, sample, layer), identical to
/// <c>e3_gumbel_noise</c> in kernels/common.cuh (the mask sampler, kernels/gumbel_topk.cu, and token sampling,
/// kernels/sampling.cu, both draw from it).
/// <para>
/// Layout: Philox key = (seed low 32 bits, seed high 32 bits); counter = (layer / 2, sample, step low 32 bits,
/// step high 32 bits). One call serves two layers: layer i takes words 2*(i % 2) (high) and 2*(i % 2) + 1 (low)
/// of the output. The top 52 of those 64 bits give u = (x + 0.5) / 2^52, strictly inside (0, 1), and
/// g = -log(-log u). The noise is bit-identical wherever log is the same function (C# on glibc and the CPU
/// emulator both call glibc's log); CUDA's double log may differ by an ulp.
/// </para>
/// </summary>
internal static class GumbelNoise
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
        var layer = 0;
        if (Avx2.IsSupported)
            layer = FillVectorized(seed, step, sample, noise);
        for (; layer < noise.Length; layer += 2)
        {
            var block = Philox4x32.Generate((uint)layer >> 1, (uint)sample, (uint)step, (uint)((ulong)step >> 32), (uint)seed, (uint)(seed >> 32));
            noise[layer] = FromUniform(ToUniform(block.X0, block.X1));
            if (layer + 1 < noise.Length)
                noise[layer + 1] = FromUniform(ToUniform(block.X2, block.X3));
        }
    }

    // Eight layers (four Philox calls) per iteration; returns the first layer left to the scalar loop. The two
    // logs stay scalar Math.Log calls: only glibc's own log keeps the noise bit-identical to the emulator.
    private static int FillVectorized(ulong seed, long step, int sample, Span<double> noise)
    {
        const int LayersPerBlock = 2 * 4;
        Span<double> even = stackalloc double[4], odd = stackalloc double[4];
        var pairs = Vector256.Create(0UL, 1, 2, 3);
        var layer = 0;
        for (; layer + LayersPerBlock <= noise.Length; layer += LayersPerBlock)
        {
            var c0 = Vector256.Create((ulong)((uint)layer >> 1)) + pairs;
            var c1 = Vector256.Create((ulong)(uint)sample);
            var c2 = Vector256.Create((ulong)(uint)step);
            var c3 = Vector256.Create((ulong)((ulong)step >> 32));
            Philox4x32.Generate4(ref c0, ref c1, ref c2, ref c3, (uint)seed, (uint)(seed >> 32));
            ToUniform(c0, c1).CopyTo(even);
            ToUniform(c2, c3).CopyTo(odd);
            for (var i = 0; i < 4; i++)
            {
                noise[layer + 2 * i] = FromUniform(even[i]);
                noise[layer + 2 * i + 1] = FromUniform(odd[i]);
            }
        }
        return layer;
    }

    // The scalar ToUniform per lane: x = top 52 bits < 2^52, so (2^52 + x) is the double with x as mantissa, and
    // subtracting 2^52 - 0.5 (representable) gives x + 0.5 exactly; scaling by 2^-52 is exact.
    private static Vector256<double> ToUniform(Vector256<ulong> high, Vector256<ulong> low)
    {
        var x = Vector256.ShiftRightLogical(Vector256.ShiftLeft(high, 32) | low, 12);
        var twoTo52PlusX = (x | Vector256.Create(0x4330_0000_0000_0000UL)).AsDouble();
        return (twoTo52PlusX - Vector256.Create(4503599627370495.5)) * Vector256.Create(TwoToMinus52);
    }

    private static double ToUniform(uint high, uint low) => (((((ulong)high << 32) | low) >> 12) + 0.5) * TwoToMinus52;

    private static double FromUniform(double u) => -Math.Log(-Math.Log(u));
}
