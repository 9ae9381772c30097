using E3.Backends.Cpu.Gemm;

namespace E3.Backends.Cpu;

/// <summary>
/// Row-major fp32 GEMMs for the CPU backend: blocked, packed, AVX2/FMA (with a portable
/// <see cref="System.Numerics.Vector{T}"/> fallback), multithreaded over output tiles.
/// Leading dimensions equal the row lengths. When <c>accumulate</c> is false the output is overwritten.
/// bf16 weights are raw bits (<c>bits &lt;&lt; 16</c> is the fp32 value) and are widened while packing,
/// never as a whole. Results are bit-identical run to run: every output element is summed by one thread,
/// in an order that depends only on the shape.
/// </summary>
internal static unsafe class CpuGemm
{
    /// <summary>y[m,n] (+)= x[m,k]·w[n,k]ᵀ (+ bias[n]): nn.Linear with w [out, in]. bias may be null.</summary>
    public static void MatMulTransB(float* x, int m, int k, float* w, int n, float* y, float* bias, bool accumulate)
    {
        CheckOperands(m, k, n, x, w, n, k, y);
        GemmDispatch.TransB(x, m, k, w, n, y, bias, accumulate, GemmDispatch.PreferPortable);
    }

    /// <summary>As <see cref="MatMulTransB(float*,int,int,float*,int,float*,float*,bool)"/> with bf16 weights (raw bits).</summary>
    public static void MatMulTransB(float* x, int m, int k, ushort* w, int n, float* y, float* bias, bool accumulate)
    {
        CheckOperands(m, k, n, x, w, n, k, y);
        GemmDispatch.TransB(x, m, k, w, n, y, bias, accumulate, GemmDispatch.PreferPortable);
    }

    /// <summary>
    /// y[m,n] (+)= x[m,k]·w[k,n]. For dX = dY·W with W [out, in]: x = dY [m, out], k = out, n = in.
    /// </summary>
    public static void MatMul(float* x, int m, int k, float* w, int n, float* y, bool accumulate)
    {
        CheckOperands(m, k, n, x, w, k, n, y);
        GemmDispatch.NoTrans(x, m, k, w, n, y, accumulate, GemmDispatch.PreferPortable);
    }

    /// <summary>As <see cref="MatMul(float*,int,int,float*,int,float*,bool)"/> with bf16 weights (raw bits).</summary>
    public static void MatMul(float* x, int m, int k, ushort* w, int n, float* y, bool accumulate)
    {
        CheckOperands(m, k, n, x, w, k, n, y);
        GemmDispatch.NoTrans(x, m, k, w, n, y, accumulate, GemmDispatch.PreferPortable);
    }

    /// <summary>
    /// dw[n,k] (+)= dy[m,n]ᵀ·x[m,k]: the weight gradient of nn.Linear, summed over the m rows in fp32.
    /// </summary>
    public static void MatMulTransA(float* x, int m, int k, float* dy, int n, float* dw, bool accumulate)
    {
        GemmArguments.CheckSizes(m, k, n);
        GemmArguments.CheckBuffer(x, m, k, nameof(x));
        GemmArguments.CheckBuffer(dy, m, n, nameof(dy));
        GemmArguments.CheckBuffer(dw, n, k, nameof(dw));
        GemmDispatch.TransA(x, m, k, dy, n, dw, accumulate, GemmDispatch.PreferPortable);
    }

    private static void CheckOperands(int m, int k, int n, float* x, void* w, int wRows, int wCols, float* y)
    {
        GemmArguments.CheckSizes(m, k, n);
        GemmArguments.CheckBuffer(x, m, k, nameof(x));
        GemmArguments.CheckBuffer(w, wRows, wCols, nameof(w));
        GemmArguments.CheckBuffer(y, m, n, nameof(y));
    }
}
