using E3.Backends.Cpu;
using E3.Backends.Cpu.Gemm;
using E3.Backends.Numerics;

namespace E3.Tests.Gemm;

/// <summary>The five public GEMM variants (bf16 = bf16 weights).</summary>
public enum GemmVariant { TransBF32, TransBBf16, MatMulF32, MatMulBf16, TransA }

/// <summary>
/// One GEMM instance with its inputs, the result of our kernel and an independent double-precision
/// reference. Operands are laid out exactly as the public API takes them:
/// TransB: x[m,k], w[n,k] -> y[m,n]; MatMul: x[m,k], w[k,n] -> y[m,n]; TransA: x[m,k], w = dy[m,n] -> dw[n,k].
/// </summary>
public sealed unsafe class GemmProblem
{
    public GemmVariant Variant { get; }
    public int M { get; }
    public int K { get; }
    public int N { get; }
    public bool Accumulate { get; }
    public float[] X { get; }
    /// <summary>The right operand as fp32 values (for bf16 variants, exactly the decoded bf16 values).</summary>
    public float[] W { get; }
    public ushort[] WBits { get; }
    public float[]? Bias { get; }
    /// <summary>The output's contents before the call (what accumulate adds to).</summary>
    public float[] InitialOutput { get; }

    public int OutRows => Variant == GemmVariant.TransA ? N : M;
    public int OutCols => Variant == GemmVariant.TransA ? K : N;
    public int Inner => Variant == GemmVariant.TransA ? M : K;
    public bool IsBf16 => Variant is GemmVariant.TransBBf16 or GemmVariant.MatMulBf16;

    /// <param name="integers">Small integers instead of reals: every sum is then exact in fp32.</param>
    public GemmProblem(GemmVariant variant, int m, int k, int n, bool accumulate, bool withBias, int seed, bool integers = false)
    {
        Variant = variant; M = m; K = k; N = n; Accumulate = accumulate;
        var rng = new Random(seed);
        float Next() => integers ? rng.Next(-3, 4) : (float)(rng.NextDouble() * 2 - 1);
        X = Fill(m * k, Next);
        int wCount = variant == GemmVariant.TransA ? m * n : n * k;
        WBits = new ushort[wCount];
        W = Fill(wCount, Next);
        if (IsBf16)
            for (int i = 0; i < wCount; i++) { WBits[i] = BFloat16.FromSingle(W[i]); W[i] = BFloat16.ToSingle(WBits[i]); }
        bool hasBias = withBias && variant is GemmVariant.TransBF32 or GemmVariant.TransBBf16;
        Bias = hasBias ? Fill(n, Next) : null;
        InitialOutput = Fill(OutRows * OutCols, Next);
    }

    private static float[] Fill(int count, Func<float> next)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = next();
        return values;
    }

    /// <summary>
    /// Runs our kernel through the public API, or, when <paramref name="portable"/> is given, through the
    /// internal dispatch with that kernel choice and a partition planned for <paramref name="workers"/> threads.
    /// </summary>
    public float[] RunOurs(bool? portable = null, int workers = 0)
    {
        var y = (float[])InitialOutput.Clone();
        fixed (float* x = X, w = W, yp = y, b = Bias)
        fixed (ushort* wb = WBits)
        {
            if (portable is bool forced) RunInternal(x, w, wb, yp, b, forced, workers);
            else RunPublic(x, w, wb, yp, b);
        }
        return y;
    }

    private void RunPublic(float* x, float* w, ushort* wb, float* y, float* b)
    {
        switch (Variant)
        {
            case GemmVariant.TransBF32: CpuGemm.MatMulTransB(x, M, K, w, N, y, b, Accumulate); break;
            case GemmVariant.TransBBf16: CpuGemm.MatMulTransB(x, M, K, wb, N, y, b, Accumulate); break;
            case GemmVariant.MatMulF32: CpuGemm.MatMul(x, M, K, w, N, y, Accumulate); break;
            case GemmVariant.MatMulBf16: CpuGemm.MatMul(x, M, K, wb, N, y, Accumulate); break;
            default: CpuGemm.MatMulTransA(x, M, K, w, N, y, Accumulate); break;
        }
    }

    private void RunInternal(float* x, float* w, ushort* wb, float* y, float* b, bool portable, int workers)
    {
        switch (Variant)
        {
            case GemmVariant.TransBF32: GemmDispatch.TransB(x, M, K, w, N, y, b, Accumulate, portable, workers); break;
            case GemmVariant.TransBBf16: GemmDispatch.TransB(x, M, K, wb, N, y, b, Accumulate, portable, workers); break;
            case GemmVariant.MatMulF32: GemmDispatch.NoTrans(x, M, K, w, N, y, Accumulate, portable, workers); break;
            case GemmVariant.MatMulBf16: GemmDispatch.NoTrans(x, M, K, wb, N, y, Accumulate, portable, workers); break;
            default: GemmDispatch.TransA(x, M, K, w, N, y, Accumulate, portable, workers); break;
        }
    }

    /// <summary>
    /// Exact-in-double result and, per element, the magnitude S = Σ|a||b| + |bias| + |initial output|
    /// that scales the fp32 rounding error bound.
    /// </summary>
    public (double[] Value, double[] Magnitude) Reference()
    {
        int rows = OutRows, cols = OutCols, inner = Inner;
        // A(r,p) and B(p,c) gathered into row-major [rows, inner] and [cols, inner] doubles.
        var a = new double[rows * inner];
        var bt = new double[cols * inner];
        for (int r = 0; r < rows; r++)
            for (int p = 0; p < inner; p++)
                a[r * inner + p] = Variant == GemmVariant.TransA ? W[p * N + r] : X[r * K + p];
        for (int c = 0; c < cols; c++)
            for (int p = 0; p < inner; p++)
                bt[c * inner + p] = Variant switch
                {
                    GemmVariant.TransBF32 or GemmVariant.TransBBf16 => W[c * K + p],
                    GemmVariant.MatMulF32 or GemmVariant.MatMulBf16 => W[p * N + c],
                    _ => X[p * K + c],
                };

        var value = new double[rows * cols];
        var magnitude = new double[rows * cols];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
            {
                double sum = 0, abs = 0;
                int ar = r * inner, bc = c * inner;
                for (int p = 0; p < inner; p++)
                {
                    double t = a[ar + p] * bt[bc + p];
                    sum += t;
                    abs += Math.Abs(t);
                }
                double extra = 0;
                if (Bias != null) { sum += Bias[c]; extra += Math.Abs(Bias[c]); }
                if (Accumulate) { sum += InitialOutput[r * cols + c]; extra += Math.Abs(InitialOutput[r * cols + c]); }
                value[r * cols + c] = sum;
                magnitude[r * cols + c] = abs + extra;
            }
        return (value, magnitude);
    }

    /// <summary>
    /// Higham's worst-case bound for a dot product of n terms summed in any order: |error| ≤ γ_n·Σ|terms|,
    /// γ_n = n·u/(1 − n·u), u = 2⁻²⁴ (c = 1; the product rounding is included, FMA only removes roundings).
    /// Counting the roundings one product can pass through on each path:
    /// blocked: ≤ 256 FMAs in its K block, one addition into C per later K block, bias and the accumulated
    /// output, which is ≤ inner + 2 since a second block exists only when inner > 256;
    /// skinny: ≤ inner/4 lane FMAs (two vectors of ≥ 4 lanes may share an accumulator), lo+hi, a lane
    /// reduction of ≤ 4 levels, the tail addition, bias and output; below one vector step only the tail's
    /// inner roundings count. Both stay ≤ inner + 4 for every inner ≥ 1.
    /// So n = inner + 4 bounds every path. The double reference's own error (~inner·2⁻⁵³·S) is negligible.
    /// </summary>
    public double Tolerance(double magnitude) => Gamma(Inner + 4) * magnitude;

    public static double Gamma(int n)
    {
        double u = Math.ScaleB(1.0, -24);
        return n * u / (1 - n * u);
    }

    public override string ToString() =>
        $"{Variant} m={M} k={K} n={N} accumulate={Accumulate} bias={(Bias != null)}";
}
