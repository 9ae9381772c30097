namespace E3.Backends.Cpu;

/// <summary>
/// Row-major single-precision GEMMs for the CPU backend.
/// Placeholder scalar implementation; the blocked, vectorised, multithreaded one replaces the bodies
/// while keeping these signatures.
/// </summary>
public static unsafe class CpuGemm
{
    /// <summary>
    /// y[m,n] (+)= x[m,k] · w[n,k]ᵀ (+ bias[n]). Leading dimensions equal the row lengths.
    /// When <paramref name="accumulate"/> is false y is overwritten. bias may be null.
    /// </summary>
    public static void MatMulTransB(float* x, int m, int k, float* w, int n, float* y, float* bias, bool accumulate)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float s = 0;
                for (int p = 0; p < k; p++) s += x[(long)i * k + p] * w[(long)j * k + p];
                if (bias != null) s += bias[j];
                y[(long)i * n + j] = accumulate ? y[(long)i * n + j] + s : s;
            }
    }

    /// <summary>As <see cref="MatMulTransB(float*,int,int,float*,int,float*,float*,bool)"/> with bf16 weights (raw bits).</summary>
    public static void MatMulTransB(float* x, int m, int k, ushort* w, int n, float* y, float* bias, bool accumulate)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float s = 0;
                for (int p = 0; p < k; p++) s += x[(long)i * k + p] * Numerics.BFloat16.ToSingle(w[(long)j * k + p]);
                if (bias != null) s += bias[j];
                y[(long)i * n + j] = accumulate ? y[(long)i * n + j] + s : s;
            }
    }
}
