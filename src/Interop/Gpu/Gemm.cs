namespace E3.Interop.Gpu;

/// <summary>Whether a GEMM operand is used as stored or transposed (<c>cublasOperation_t</c> values).</summary>
internal enum GemmOperation
{
    /// <summary>CUBLAS_OP_N.</summary>
    None = 0,

    /// <summary>CUBLAS_OP_T.</summary>
    Transpose = 1,
}

/// <summary>Element type of a GEMM operand (<c>cudaDataType</c> values).</summary>
internal enum GemmDataType
{
    /// <summary>CUDA_R_32F.</summary>
    F32 = 0,

    /// <summary>CUDA_R_16F.</summary>
    F16 = 2,

    /// <summary>CUDA_R_16BF.</summary>
    BF16 = 14,
}

/// <summary>How a GEMM multiplies (<c>cublasComputeType_t</c> values); both accumulate in fp32.</summary>
internal enum GemmCompute
{
    /// <summary>CUBLAS_COMPUTE_32F: products of the operands as they are.</summary>
    Fp32 = 68,

    /// <summary>
    /// CUBLAS_COMPUTE_32F_FAST_TF32: fp32 operands rounded to TF32 (10 of fp32's 23 mantissa bits, a relative error of
    /// at most 2^-11 each) on the tensor cores, several times plain fp32's rate. fp32 A, B and C only (as cuBLAS).
    /// </summary>
    FastTf32 = 77,
}

/// <summary>One column-major GEMM operand.</summary>
/// <param name="Pointer">First element of the first matrix.</param>
/// <param name="Type">Element type.</param>
/// <param name="LeadingDimension">Elements between the starts of consecutive columns (as stored).</param>
/// <param name="BatchStride">Elements between consecutive matrices of a strided batch.</param>
internal readonly record struct GemmMatrix(DevicePtr Pointer, GemmDataType Type, int LeadingDimension, long BatchStride = 0);

/// <summary>
/// C = Alpha * op(A) * op(B) + Beta * C with cuBLAS semantics: every matrix is column-major, op(A) is M x K,
/// op(B) is K x N, C is M x N, accumulation in fp32 (<see cref="Compute"/> says how the products are formed).
/// <see cref="BatchCount"/> above 1 repeats it over strided batches (cublasGemmStridedBatchedEx). Row-major callers use
/// <see cref="RowMajorGemm"/> rather than transposing by hand.
/// </summary>
internal readonly record struct GemmDescriptor(
    GemmOperation TransA, GemmOperation TransB, int M, int N, int K,
    float Alpha, GemmMatrix A, GemmMatrix B, float Beta, GemmMatrix C, int BatchCount = 1, GemmCompute Compute = GemmCompute.Fp32)
{
    /// <summary>Checks sizes and leading dimensions the way cuBLAS would, with a message naming the field.</summary>
    /// <exception cref="ArgumentException">A dimension is negative or a leading dimension too small.</exception>
    public void Validate()
    {
        Require(M >= 0, nameof(M), M, "must be >= 0");
        Require(N >= 0, nameof(N), N, "must be >= 0");
        Require(K >= 0, nameof(K), K, "must be >= 0");
        Require(BatchCount >= 1, nameof(BatchCount), BatchCount, "must be >= 1");
        int aRows = TransA == GemmOperation.None ? M : K;
        int bRows = TransB == GemmOperation.None ? K : N;
        // The messages are formatted only on failure: this runs for every GEMM of every decode step.
        if (A.LeadingDimension < Math.Max(1, aRows))
            Fail("A.LeadingDimension", A.LeadingDimension, $"must be >= max(1, {aRows}) (rows of A as stored)");
        if (B.LeadingDimension < Math.Max(1, bRows))
            Fail("B.LeadingDimension", B.LeadingDimension, $"must be >= max(1, {bRows}) (rows of B as stored)");
        if (C.LeadingDimension < Math.Max(1, M))
            Fail("C.LeadingDimension", C.LeadingDimension, $"must be >= max(1, {M}) (M)");
        if (Compute is not (GemmCompute.Fp32 or GemmCompute.FastTf32))
            Fail("Compute", (long)Compute, "must be Fp32 (68) or FastTf32 (77)");
        if (Compute == GemmCompute.FastTf32 && (A.Type != GemmDataType.F32 || B.Type != GemmDataType.F32 || C.Type != GemmDataType.F32))
            throw new ArgumentException($"GEMM Compute = FastTf32 needs fp32 A, B and C, not {A.Type}, {B.Type} and {C.Type}", nameof(Compute));
    }

    private static void Require(bool condition, string field, long value, string rule)
    {
        if (!condition) Fail(field, value, rule);
    }

    private static void Fail(string field, long value, string rule) => throw new ArgumentException($"GEMM {field} = {value} {rule}", field);
}

/// <summary>
/// Row-major linear layers expressed as column-major GEMMs. A row-major R x C matrix is, byte for byte, a
/// column-major C x R matrix (its transpose). So y[M,N] = x[M,K] · w[N,K]ᵀ, read column-major, is
/// yᵀ[N,M] = w[N,K] · xᵀ[K,M], where the stored w is column-major K x N (needs op T) and the stored x is
/// column-major K x M (op N):
/// <c>gemm(transa=T, transb=N, m=N, n=M, k=K, A=w, lda=K, B=x, ldb=K, C=y, ldc=N)</c>.
/// </summary>
internal static class RowMajorGemm
{
    /// <summary>y[M,N] = x[M,K] · w[N,K]ᵀ (+ beta * y), the layout of a torch Linear weight.</summary>
    public static GemmDescriptor Linear(DevicePtr x, DevicePtr w, DevicePtr y, int m, int n, int k,
        GemmDataType inputType, GemmDataType outputType, float beta = 0f, GemmCompute compute = GemmCompute.Fp32) =>
        LinearBatched(x, w, y, m, n, k, inputType, outputType, batchCount: 1, 0, 0, 0, beta, compute);

    /// <summary>
    /// The input gradient of <see cref="Linear"/>: dx[M,K] = dy[M,N] · w[N,K] (+ beta · dx). Column-major this is
    /// dxᵀ[K,M] = wᵀ[K,N] · dyᵀ[N,M], and the stored w and dy already are those column-major matrices (no transposes).
    /// </summary>
    public static GemmDescriptor LinearInputGrad(DevicePtr dy, DevicePtr w, DevicePtr dx, int m, int n, int k, GemmDataType type, float beta = 0f,
        GemmCompute compute = GemmCompute.Fp32)
    {
        var descriptor = new GemmDescriptor(
            GemmOperation.None, GemmOperation.None, M: k, N: m, K: n, Alpha: 1f,
            A: new GemmMatrix(w, type, Math.Max(1, k)),
            B: new GemmMatrix(dy, type, Math.Max(1, n)),
            Beta: beta,
            C: new GemmMatrix(dx, type, Math.Max(1, k)),
            Compute: compute);
        descriptor.Validate();
        return descriptor;
    }

    /// <summary>
    /// The weight gradient of <see cref="Linear"/>, accumulated: dw[N,K] += dy[M,N]ᵀ · x[M,K]. Column-major this is
    /// dwᵀ[K,N] += xᵀ[K,M] · dy[M,N]: the stored x is column-major K x M (op N), the stored dy is column-major N x M (op T).
    /// </summary>
    public static GemmDescriptor LinearWeightGrad(DevicePtr x, DevicePtr dy, DevicePtr dw, int m, int n, int k, GemmDataType type,
        GemmCompute compute = GemmCompute.Fp32)
    {
        var descriptor = new GemmDescriptor(
            GemmOperation.None, GemmOperation.Transpose, M: k, N: n, K: m, Alpha: 1f,
            A: new GemmMatrix(x, type, Math.Max(1, k)),
            B: new GemmMatrix(dy, type, Math.Max(1, n)),
            Beta: 1f,
            C: new GemmMatrix(dw, type, Math.Max(1, k)),
            Compute: compute);
        descriptor.Validate();
        return descriptor;
    }

    /// <summary>
    /// For b &lt; batchCount: y_b = x_b · w_bᵀ with the b-th matrices at the given element strides
    /// (a stride of 0 reuses one matrix for every batch).
    /// </summary>
    public static GemmDescriptor LinearBatched(DevicePtr x, DevicePtr w, DevicePtr y, int m, int n, int k,
        GemmDataType inputType, GemmDataType outputType, int batchCount, long xStride, long wStride, long yStride, float beta = 0f,
        GemmCompute compute = GemmCompute.Fp32)
    {
        var descriptor = new GemmDescriptor(
            GemmOperation.Transpose, GemmOperation.None, M: n, N: m, K: k, Alpha: 1f,
            A: new GemmMatrix(w, inputType, Math.Max(1, k), wStride),
            B: new GemmMatrix(x, inputType, Math.Max(1, k), xStride),
            Beta: beta,
            C: new GemmMatrix(y, outputType, Math.Max(1, n), yStride),
            BatchCount: batchCount,
            Compute: compute);
        descriptor.Validate();
        return descriptor;
    }
}
