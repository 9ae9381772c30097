using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace E3.Pruning.Distillation;

/// <summary>
/// Vectorised sums over one block of a logit row (at most <see cref="Block"/> columns, so the block stays in L1
/// between its max and its exp sweep). Sums inside a block are fp32 per lane; callers merge blocks in double with
/// the online-softmax rule, so a row is read from memory once per pass whatever its length.
/// </summary>
internal static class RowMath
{
    /// <summary>Columns per block: 8 KiB of fp32, small enough for L1 next to the teacher block.</summary>
    public const int Block = 2048;

    private const int Lanes = 8;

    /// <summary>Largest value of <paramref name="z"/>; <paramref name="finite"/> turns false on any NaN or ±∞.</summary>
    public static float Max(ReadOnlySpan<float> z, ref bool finite)
    {
        var max = Vector256.Create(float.NegativeInfinity);
        var poison = Vector256<float>.Zero; // x - x is 0 for finite x and NaN otherwise
        int i = 0;
        for (; i + Lanes <= z.Length; i += Lanes)
        {
            var v = Vector256.Create(z.Slice(i, Lanes));
            max = Vector256.Max(max, v);
            poison += v - v;
        }
        float m = HorizontalMax(max);
        float p = Vector256.Sum(poison);
        for (; i < z.Length; i++)
        {
            m = MathF.Max(m, z[i]);
            p += z[i] - z[i];
        }
        if (!float.IsFinite(p) || float.IsNaN(m)) finite = false;
        return m;
    }

    /// <summary>Σ e^u and Σ e^u·u with u = (z − reference)·k: the teacher's softmax sum and entropy numerator.</summary>
    public static void SumExpEntropy(ReadOnlySpan<float> z, float reference, float k, out double sum, out double weighted)
    {
        var s = Vector256<float>.Zero;
        var w = Vector256<float>.Zero;
        var refV = Vector256.Create(reference);
        var kV = Vector256.Create(k);
        for (int i = 0; i < z.Length; i += Lanes)
        {
            var mask = Mask(z.Length - i);
            var u = (Load(z, i) - refV) * kV;
            var e = Vector256.ConditionalSelect(mask, Vector256.Exp(u), Vector256<float>.Zero);
            s += e;
            w += Vector256.ConditionalSelect(mask, e * u, Vector256<float>.Zero);
        }
        sum = Vector256.Sum(s);
        weighted = Vector256.Sum(w);
    }

    /// <summary>Σ e^{(z − reference)·k}, and Σ e^{z − reference} into <paramref name="sumUnit"/> when <paramref name="unit"/>.</summary>
    public static void SumExp(ReadOnlySpan<float> z, float reference, float k, bool unit, out double sum, out double sumUnit)
    {
        var s = Vector256<float>.Zero;
        var s1 = Vector256<float>.Zero;
        var refV = Vector256.Create(reference);
        var kV = Vector256.Create(k);
        for (int i = 0; i < z.Length; i += Lanes)
        {
            var mask = Mask(z.Length - i);
            var d = Load(z, i) - refV;
            s += Vector256.ConditionalSelect(mask, Vector256.Exp(d * kV), Vector256<float>.Zero);
            if (unit) s1 += Vector256.ConditionalSelect(mask, Vector256.Exp(d), Vector256<float>.Zero);
        }
        sum = Vector256.Sum(s);
        sumUnit = Vector256.Sum(s1);
    }

    /// <summary>
    /// Forward-KL sums against a dense teacher with log p = (zt − tMax)·k − tLogSum:
    /// Σ p and Σ p·(z − reference) (for Σ p·log q).
    /// </summary>
    public static void SumTeacherWeighted(ReadOnlySpan<float> z, ReadOnlySpan<float> zt, float reference, float k, float tMax, float tLogSum,
        out double pSum, out double pz)
    {
        var ps = Vector256<float>.Zero;
        var pzs = Vector256<float>.Zero;
        var refV = Vector256.Create(reference);
        var kV = Vector256.Create(k);
        var tMaxV = Vector256.Create(tMax);
        var tLogV = Vector256.Create(tLogSum);
        for (int i = 0; i < z.Length; i += Lanes)
        {
            var mask = Mask(z.Length - i);
            var p = Vector256.ConditionalSelect(mask, Vector256.Exp((Load(zt, i) - tMaxV) * kV - tLogV), Vector256<float>.Zero);
            ps += p;
            pzs += Vector256.ConditionalSelect(mask, p * (Load(z, i) - refV), Vector256<float>.Zero);
        }
        pSum = Vector256.Sum(ps);
        pz = Vector256.Sum(pzs);
    }

    /// <summary>
    /// Reverse-KL sum against a dense teacher: Σ e^u·(u − v) with u = (z − reference)·k, v = (zt − tMax)·k.
    /// </summary>
    public static void SumReverse(ReadOnlySpan<float> z, ReadOnlySpan<float> zt, float reference, float k, float tMax, out double weighted)
    {
        var w = Vector256<float>.Zero;
        var refV = Vector256.Create(reference);
        var kV = Vector256.Create(k);
        var tMaxV = Vector256.Create(tMax);
        for (int i = 0; i < z.Length; i += Lanes)
        {
            var mask = Mask(z.Length - i);
            var u = (Load(z, i) - refV) * kV;
            var v = (Load(zt, i) - tMaxV) * kV;
            w += Vector256.ConditionalSelect(mask, Vector256.Exp(u) * (u - v), Vector256<float>.Zero);
        }
        weighted = Vector256.Sum(w);
    }

    /// <summary>Lanes [0, remaining) set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Mask(int remaining)
    {
        if (remaining >= Lanes) return Vector256<float>.AllBitsSet;
        var lane = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        return Vector256.LessThan(lane, Vector256.Create(remaining)).AsSingle();
    }

    /// <summary>Eight values from <paramref name="i"/>, zero-padded past the end.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(ReadOnlySpan<float> x, int i) =>
        i + Lanes <= x.Length ? Vector256.Create(x.Slice(i, Lanes)) : LoadPartial(x, i);

    // Out of line: a stackalloc would keep Load from being inlined into the hot loops.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Vector256<float> LoadPartial(ReadOnlySpan<float> x, int i)
    {
        Span<float> padded = stackalloc float[Lanes];
        padded.Clear();
        x[i..].CopyTo(padded);
        return Vector256.Create((ReadOnlySpan<float>)padded);
    }

    /// <summary>Stores the first min(8, remaining) lanes at <paramref name="i"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector256<float> v, Span<float> x, int i)
    {
        if (i + Lanes <= x.Length) v.CopyTo(x.Slice(i, Lanes));
        else StorePartial(v, x, i);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void StorePartial(Vector256<float> v, Span<float> x, int i)
    {
        Span<float> padded = stackalloc float[Lanes];
        v.CopyTo(padded);
        padded[..(x.Length - i)].CopyTo(x[i..]);
    }

    private static float HorizontalMax(Vector256<float> v)
    {
        float m = v[0];
        for (int i = 1; i < Lanes; i++) m = MathF.Max(m, v[i]);
        return m;
    }
}
