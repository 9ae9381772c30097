using System.Buffers;
using System.Numerics.Tensors;

namespace E3.Model;

/// <summary>
/// Standard normal values that depend only on a key and their block's index, so that a tensor can be filled in blocks,
/// in any order and on any number of threads, with the same result.
/// </summary>
/// <remarks>
/// Block b of m values takes p = ceil(m / 2) counter-hashed 64-bit words h_j = mix(key, b, j). Each word gives
/// u1 = (h >> 40) + 1 over 2^24, in (0, 1], and u2 = the next 24 bits over 2^24, in [0, 1); Box–Muller turns them into
/// r_j cos(2π u2) and r_j sin(2π u2) (the angle rounded to fp32) with r_j = sqrt(-2 ln u1). The cosines fill the block's
/// first p values and the sines the rest. The logarithm, square root, sine and cosine run vectorised
/// (System.Numerics.Tensors), which makes an 8B-parameter model a matter of seconds; 24-bit uniforms bound |z| by 5.8,
/// which no random weight needs to exceed.
/// </remarks>
internal static class SeededNormal
{
    /// <summary>Values per block: the unit of work and of the layout described above.</summary>
    public const int BlockValues = 1 << 20;

    /// <summary>A key for one stream (e.g. one tensor of one seeded model).</summary>
    public static ulong Key(long seed, long stream) => Mix(Mix((ulong)seed) ^ Mix((ulong)stream + 0x9E3779B97F4A7C15UL));

    /// <summary>Fills <paramref name="values"/> (at most <see cref="BlockValues"/>) with block <paramref name="block"/> of stream <paramref name="key"/>.</summary>
    public static void FillBlock(ulong key, long block, Span<float> values)
    {
        if (values.Length > BlockValues) throw new ArgumentOutOfRangeException(nameof(values), $"a block holds at most {BlockValues} values, not {values.Length}");
        int pairs = (values.Length + 1) / 2, sines = values.Length - pairs;
        float[] rented = ArrayPool<float>.Shared.Rent(3 * pairs);
        try
        {
            Span<float> radius = rented.AsSpan(0, pairs), angle = rented.AsSpan(pairs, pairs), sin = rented.AsSpan(2 * pairs, pairs);
            ulong blockKey = Mix(key ^ Mix((ulong)block));
            const float Step = 1f / (1 << 24), TurnStep = 2 * MathF.PI / (1 << 24);
            for (int j = 0; j < pairs; j++)
            {
                // SplitMix64: the golden-ratio counter, then the finaliser.
                ulong h = Mix(blockKey + (ulong)(j + 1) * 0x9E3779B97F4A7C15UL);
                radius[j] = ((h >> 40) + 1) * Step;
                angle[j] = ((h >> 16) & 0xFFFFFF) * TurnStep;
            }
            TensorPrimitives.Log(radius, radius);
            TensorPrimitives.Multiply(radius, -2f, radius);
            TensorPrimitives.Sqrt(radius, radius);
            Span<float> cos = values[..pairs];
            // Cos and Sin separately: .NET 10's TensorPrimitives vectorises them but not SinCos, which measured 3-7x slower.
            TensorPrimitives.Cos(angle, cos);
            TensorPrimitives.Sin(angle, sin);
            TensorPrimitives.Multiply(cos, radius, cos);
            TensorPrimitives.Multiply(sin[..sines], radius[..sines], values[pairs..]);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rented);
        }
    }

    // SplitMix64's finaliser (a bijection). Applied to a golden-ratio counter, as above, it is SplitMix64, which passes
    // BigCrush.
    static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
