using E3.Interop.Gpu;
using E3.Interop.Kernels;

namespace E3.Backends.Gpu;

// The distillation loss fused with the LM head on the device: cuBLAS forms one chunk of fp32 logits, the entropy_kd.cu
// student pass overwrites it with dL/dlogits, and two more GEMMs take it back to the hidden states and (when trained)
// the head. Only per-row scalars cross to the host: the teacher's statistics for the token weights, the coefficients
// back, and KL_t and CE_t for the loss.
internal sealed partial class GpuBackend : IDistillationBackend
{
    DistillationResources? _distillation;

    DistillationResources Distillation => _distillation ??= new DistillationResources(_device, Stream);

    /// <inheritdoc/>
    public void KdTeacherStatistics(Tensor teacherLogits, int vocab, float inverseTemperature, Span<float> max, Span<float> logSum, Span<float> entropy)
    {
        var t = Shared(teacherLogits);
        int rows = checked((int)t.Rows);
        if (vocab < 1 || vocab > t.Columns)
            throw new ArgumentOutOfRangeException(nameof(vocab), vocab, $"must be in [1, {t.Columns}] for teacher logits {teacherLogits}");
        RequireInverseTemperature(inverseTemperature);
        if (max.Length != rows || logSum.Length != rows || entropy.Length != rows)
            throw new ArgumentException($"teacher statistics: {max.Length}, {logSum.Length} and {entropy.Length} values given for the {rows} rows of {teacherLogits}");
        if (rows == 0) return;
        var stats = Distillation.Statistics(rows);
        if (t.DType == DType.F32) Distillation.Kernels.TeacherPass(t.F32, t.Columns, rows, vocab, inverseTemperature, stats, Stream);
        else Distillation.Kernels.TeacherPass(t.BF16, t.Columns, rows, vocab, inverseTemperature, stats, Stream);
        _device.CopyToHost(max, stats.Max, Stream);
        _device.CopyToHost(logSum, stats.LogSum, Stream);
        _device.CopyToHost(entropy, stats.Entropy, Stream);
    }

    /// <inheritdoc/>
    public KdHeadChunking KdLmHead(Tensor hidden, Tensor lmHead, KdHeadTeacher teacher, KdHeadRows rows, Tensor dHidden, Tensor? dLmHead,
        long chunkBudgetBytes, Span<float> rowKl, Span<float> rowCe)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunkBudgetBytes);
        var h = Grad(hidden); var w = Weight(lmHead); var dh = Grad(dHidden);
        var dw = dLmHead == null ? null : Grad(dLmHead);
        int count = checked((int)h.Rows), width = h.Columns, studentVocab = checked((int)w.Rows), vocab = teacher.Vocab;
        if (w.Columns != width || dh.Rows != count || dh.Columns != width) throw Shape("KdLmHead", hidden, lmHead);
        if (dw != null && (dw.Rows != studentVocab || dw.Columns != width)) throw Shape("KdLmHead head gradient", dLmHead!, lmHead);
        if (vocab < 1 || vocab > studentVocab)
            throw new ArgumentOutOfRangeException(nameof(teacher), vocab, $"the common vocabulary must be in [1, {studentVocab}] (the head's rows)");
        RequireInverseTemperature(rows.InverseTemperature);
        if (rows.KdCoefficient.Length != count || rows.Labels.Length != count || rowKl.Length != count || rowCe.Length != count)
            throw new ArgumentException($"KdLmHead: {rows.KdCoefficient.Length} coefficients, {rows.Labels.Length} labels, {rowKl.Length} and {rowCe.Length} outputs for {count} rows");
        for (int r = 0; r < count; r++)
            if (rows.Labels[r] < -2 || rows.Labels[r] >= vocab)
                throw new ArgumentOutOfRangeException(nameof(rows), $"Labels[{r}] = {rows.Labels[r]}: must be -2, -1 or a token in [0, {vocab})");

        long rowBytes = (long)studentVocab * sizeof(float);
        int chunkRows = (int)Math.Clamp(chunkBudgetBytes / rowBytes, 1, Math.Max(1, count));
        var chunking = new KdHeadChunking(chunkRows, chunkRows * rowBytes);
        if (count == 0) return chunking;

        var perRow = Distillation.RowValues(count);
        _device.CopyToDevice(perRow.Coefficient, rows.KdCoefficient, Stream);
        _device.CopyToDevice(perRow.Labels, rows.Labels, Stream);
        var student = StudentSide.For(this, teacher, count, vocab);
        var logits = Distillation.Logits.Floats((long)chunkRows * studentVocab);
        var kernels = Distillation.Kernels;
        for (int first = 0; first < count; first += chunkRows)
        {
            int n = Math.Min(chunkRows, count - first);
            var hChunk = h.Pointer.Add((long)first * width * sizeof(float));
            _device.Gemm(RowMajorGemm.Linear(hChunk, w.Pointer, logits.Raw, n, studentVocab, width, GemmDataType.F32, GemmDataType.F32,
                compute: Fp32Compute), Stream);
            var settings = new KdStudentRows(perRow.Coefficient.Offset(first), perRow.Labels.Offset(first), rows.CeCoefficient, rows.InverseTemperature,
                rows.Reverse, perRow.Kl.Offset(first), perRow.Ce.Offset(first));
            if (student.Dense is { } z)
            {
                // A bf16 teacher (the inference path's logits) is read as it is, not widened into an fp32 copy first.
                long offset = (long)first * z.Width;
                if (z.Logits.DType == DType.F32) kernels.Dense(logits, studentVocab, z.Logits.F32.Offset(offset), z.Width, n, vocab, z.Rows(first), settings, Stream);
                else kernels.Dense(logits, studentVocab, z.Logits.BF16.Offset(offset), z.Width, n, vocab, z.Rows(first), settings, Stream);
            }
            else
                kernels.Sparse(logits, studentVocab, n, vocab, student.Indices.Offset((long)first * student.TopK),
                    student.BucketLogProbs.Offset((long)first * (student.TopK + 1)), student.TopK, settings, Stream);
            _device.Gemm(RowMajorGemm.LinearInputGrad(logits.Raw, w.Pointer, dh.Pointer.Add((long)first * width * sizeof(float)), n, studentVocab, width,
                GemmDataType.F32, compute: Fp32Compute), Stream);
            if (dw != null)
                _device.Gemm(RowMajorGemm.LinearWeightGrad(hChunk, logits.Raw, dw.Pointer, n, studentVocab, width, GemmDataType.F32, Fp32Compute), Stream);
        }
        _device.CopyToHost(rowKl, perRow.Kl, Stream);
        _device.CopyToHost(rowCe, perRow.Ce, Stream);
        return chunking;
    }

    static void RequireInverseTemperature(float value)
    {
        if (!(float.IsFinite(value) && value > 0))
            throw new ArgumentOutOfRangeException(nameof(value), value, "the inverse temperature must be finite and > 0");
    }

    /// <summary>The teacher as the student pass reads it: dense logits and their statistics, or the uploaded sparse buckets.</summary>
    readonly record struct StudentSide(DenseSide? Dense, DevicePointer<int> Indices, DevicePointer<float> BucketLogProbs, int TopK)
    {
        public static StudentSide For(GpuBackend b, KdHeadTeacher teacher, int count, int vocab)
        {
            var d = b.Distillation;
            switch (teacher)
            {
                case DenseKdHeadTeacher dense:
                {
                    var z = b.Shared(dense.Logits);
                    if (z.Rows != count || z.Columns < vocab) throw Shape("KdLmHead teacher logits", dense.Logits, dense.Logits);
                    if (dense.Max.Length != count || dense.LogSum.Length != count || dense.Entropy.Length != count)
                        throw new ArgumentException($"dense teacher: {dense.Max.Length}, {dense.LogSum.Length} and {dense.Entropy.Length} statistics for {count} rows");
                    var stats = d.Statistics(count);
                    b._device.CopyToDevice(stats.Max, dense.Max, b.Stream);
                    b._device.CopyToDevice(stats.LogSum, dense.LogSum, b.Stream);
                    b._device.CopyToDevice(stats.Entropy, dense.Entropy, b.Stream);
                    return new StudentSide(new DenseSide(z, stats), default, default, 0);
                }
                case SparseKdHeadTeacher sparse:
                {
                    int k = sparse.TopK;
                    if (k < 1 || k > EntropyKdKernels.MaxTopK || k > vocab)
                        throw new ArgumentOutOfRangeException(nameof(teacher), k, $"TopK must be in [1, min({EntropyKdKernels.MaxTopK}, vocab = {vocab})]");
                    if (sparse.Indices.Length != (long)count * k || sparse.BucketLogProbs.Length != (long)count * (k + 1))
                        throw new ArgumentException($"sparse teacher: {sparse.Indices.Length} indices and {sparse.BucketLogProbs.Length} bucket log-probabilities for [{count}, {k}]");
                    // The kernel reads the student logit at every index: one outside the row would read another row or past the buffer.
                    for (int i = 0; i < sparse.Indices.Length; i++)
                        if ((uint)sparse.Indices[i] >= (uint)vocab)
                            throw new ArgumentOutOfRangeException(nameof(teacher), $"sparse teacher: row {i / k} entry {i % k} has index {sparse.Indices[i]}, outside [0, {vocab})");
                    var indices = d.Indices.Upload(sparse.Indices);
                    var logProbs = d.Buckets.Floats(sparse.BucketLogProbs.Length);
                    b._device.CopyToDevice(logProbs, sparse.BucketLogProbs, b.Stream);
                    return new StudentSide(null, indices, logProbs, k);
                }
                default:
                    throw new ArgumentException($"unknown teacher type {teacher.GetType().Name}", nameof(teacher));
            }
        }
    }

    /// <summary>Dense teacher logits (F32 or BF16) of row stride <see cref="Width"/> and their per-row statistics.</summary>
    sealed record DenseSide(GpuTensor Logits, KdTeacherStatistics Statistics)
    {
        public int Width => Logits.Columns;

        public KdTeacherStatistics Rows(int first) =>
            new(Statistics.Max.Offset(first), Statistics.LogSum.Offset(first), Statistics.Entropy.Offset(first));
    }

    /// <summary>Per-row device values of the student pass: coefficients and labels in, KL_t and CE_t out.</summary>
    readonly record struct RowBuffers(DevicePointer<float> Coefficient, DevicePointer<int> Labels, DevicePointer<float> Kl, DevicePointer<float> Ce);

    /// <summary>The KD kernels and their scratch, created on first use so that inference and plain training never load them.</summary>
    sealed class DistillationResources(IGpuDevice device, GpuStream stream) : IDisposable
    {
        readonly DeviceScratch _statistics = new(device, stream), _rows = new(device, stream);

        public EntropyKdKernels Kernels { get; } = new(device);
        /// <summary>One chunk of fp32 logits, overwritten by their gradient.</summary>
        public DeviceScratch Logits { get; } = new(device, stream);
        /// <summary>Sparse teacher: tempered bucket log-probabilities [rows, K+1].</summary>
        public DeviceScratch Buckets { get; } = new(device, stream);
        /// <summary>Sparse teacher: top-K indices [rows, K].</summary>
        public DeviceIndexBuffer Indices { get; } = new(device, stream);
        readonly DeviceIndexBuffer _labels = new(device, stream);

        public KdTeacherStatistics Statistics(int rows)
        {
            var s = _statistics.Floats(3L * rows);
            return new KdTeacherStatistics(s, s.Offset(rows), s.Offset(2L * rows));
        }

        public RowBuffers RowValues(int rows)
        {
            var f = _rows.Floats(3L * rows);
            return new RowBuffers(f, _labels.Reserve(rows), f.Offset(rows), f.Offset(2L * rows));
        }

        public void Dispose()
        {
            Kernels.Dispose();
            _statistics.Dispose();
            _rows.Dispose();
            Logits.Dispose();
            Buckets.Dispose();
            Indices.Dispose();
            _labels.Dispose();
        }
    }
}
