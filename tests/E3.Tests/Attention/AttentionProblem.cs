using E3.Backends.Numerics;
using E3.Interop.Kernels;

namespace E3.Tests.Attention;

/// <summary>One attention shape to test; the string form names the theory case.</summary>
public sealed record AttentionCase(int Batch, int Heads, int KvHeads, int HeadDim, int Tokens, int Start, bool Bf16)
{
    /// <summary>A seed derived from the shape alone (record hash codes mix in a per-process type hash).</summary>
    public int Seed => ((((Batch * 31 + Heads) * 31 + KvHeads) * 31 + HeadDim) * 31 + Tokens) * 31 + Start * 2 + (Bf16 ? 1 : 0);

    public override string ToString() =>
        $"B{Batch} H{Heads}/{KvHeads} D{HeadDim} T{Tokens} start{Start} {(Bf16 ? "bf16" : "f32")}";
}

/// <summary>
/// Inputs of one call: random q, k, v in [-1, 1] (bf16-representable when the case is bf16, so the kernel and
/// the reference see the same numbers), and caches whose first Start positions hold earlier keys and values
/// and whose remaining positions hold NaN, so a read of a position the call must not use poisons the output.
/// </summary>
internal sealed class AttentionProblem
{
    /// <summary>Positions past the new rows, left as NaN to catch reads and writes beyond them.</summary>
    public const int SparePositions = 3;

    public AttentionProblem(AttentionCase shape, int seed)
    {
        Case = shape;
        Layout = new AttentionLayout(shape.Batch, shape.Tokens, shape.Start, shape.Start + shape.Tokens + SparePositions, shape.Heads,
            shape.KvHeads, shape.HeadDim, 1f / MathF.Sqrt(shape.HeadDim));
        var random = new Random(seed);
        int rows = shape.Batch * shape.Tokens;
        Q = Values(random, rows * QueryWidth);
        K = Values(random, rows * KvWidth);
        V = Values(random, rows * KvWidth);
        KCache = Cache(random);
        VCache = Cache(random);
    }

    public AttentionCase Case { get; }
    public AttentionLayout Layout { get; }
    public float[] Q { get; }
    public float[] K { get; }
    public float[] V { get; }
    public float[] KCache { get; }
    public float[] VCache { get; }
    public int QueryWidth => Case.Heads * Case.HeadDim;
    public int KvWidth => Case.KvHeads * Case.HeadDim;

    private float[] Values(Random random, int count)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
            values[i] = (float)(random.NextDouble() * 2 - 1);
        if (Case.Bf16)
            BFloat16.Round(values);
        return values;
    }

    private float[] Cache(Random random)
    {
        var cache = new float[Case.Batch * Layout.Capacity * KvWidth];
        Array.Fill(cache, float.NaN);
        for (int b = 0; b < Case.Batch; b++)
            Values(random, Case.Start * KvWidth).CopyTo(cache, b * Layout.Capacity * KvWidth);
        return cache;
    }
}
