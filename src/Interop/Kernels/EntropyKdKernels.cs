using E3.Interop.Gpu;

namespace E3.Interop.Kernels;

/// <summary>Per-row statistics of a dense teacher, written by the teacher pass and read by the student pass.</summary>
/// <param name="Max">Row max of the teacher logits [rows].</param>
/// <param name="LogSum">log Σ e^{(z − max)/τ} [rows].</param>
/// <param name="Entropy">H_t at temperature τ [rows].</param>
internal readonly record struct KdTeacherStatistics(DevicePointer<float> Max, DevicePointer<float> LogSum, DevicePointer<float> Entropy);

/// <summary>Per-row settings of the student pass, computed by the host from the entropies.</summary>
/// <param name="KdCoefficient">λ·τ²·w_t/N per row [rows].</param>
/// <param name="Labels">CE target per row, -1 for a valid row without CE, -2 for an ignored row [rows].</param>
/// <param name="CeCoefficient">(1 − λ)/N.</param>
/// <param name="InverseTemperature">1/τ.</param>
/// <param name="Reverse">Reverse KL(q‖p) instead of forward KL(p‖q).</param>
/// <param name="RowKl">Output: KL_t per row [rows].</param>
/// <param name="RowCe">Output: CE_t per row [rows].</param>
internal readonly record struct KdStudentRows(DevicePointer<float> KdCoefficient, DevicePointer<int> Labels, float CeCoefficient, float InverseTemperature,
    bool Reverse, DevicePointer<float> RowKl, DevicePointer<float> RowCe);

/// <summary>
/// Typed launches of kernels/entropy_kd.cu (one block of 256 threads per row): the teacher pass, then the
/// fused student pass that overwrites the student logits with the gradient.
/// </summary>
internal sealed class EntropyKdKernels : KernelFamily
{
    /// <summary>Largest K the sparse kernels accept (E3_KD_MAX_K).</summary>
    public const int MaxTopK = 64;

    private readonly GpuFunction teacherF32, teacherBf16, denseF32, denseBf16, denseF32Bf16, sparseF32, sparseBf16;

    /// <summary>Loads entropy_kd.cu on <paramref name="device"/>.</summary>
    public EntropyKdKernels(IGpuDevice device) : base(device, "entropy_kd")
    {
        teacherF32 = Function("e3_kd_teacher_f32");
        teacherBf16 = Function("e3_kd_teacher_bf16");
        denseF32 = Function("e3_kd_dense_f32");
        denseBf16 = Function("e3_kd_dense_bf16");
        denseF32Bf16 = Function("e3_kd_dense_f32_bf16");
        sparseF32 = Function("e3_kd_sparse_f32");
        sparseBf16 = Function("e3_kd_sparse_bf16");
    }

    /// <summary>Teacher pass over fp32 logits with row stride <paramref name="ldTeacher"/>, over the first <paramref name="vocab"/> columns.</summary>
    public void TeacherPass(DevicePointer<float> teacher, int ldTeacher, int rows, int vocab, float inverseTemperature, KdTeacherStatistics stats, GpuStream stream) =>
        LaunchTeacher(teacherF32, teacher.Raw, ldTeacher, rows, vocab, inverseTemperature, stats, stream);

    /// <summary>Teacher pass over bf16 logits.</summary>
    public void TeacherPass(DevicePointer<Bf16> teacher, int ldTeacher, int rows, int vocab, float inverseTemperature, KdTeacherStatistics stats, GpuStream stream) =>
        LaunchTeacher(teacherBf16, teacher.Raw, ldTeacher, rows, vocab, inverseTemperature, stats, stream);

    /// <summary>Fused student pass against a dense fp32 teacher; the student rows [rows, ldStudent] become the gradient.</summary>
    public void Dense(DevicePointer<float> student, int ldStudent, DevicePointer<float> teacher, int ldTeacher, int rows, int vocab,
        KdTeacherStatistics stats, KdStudentRows settings, GpuStream stream) =>
        LaunchDense(denseF32, student.Raw, ldStudent, teacher.Raw, ldTeacher, rows, vocab, stats, settings, stream);

    /// <summary>
    /// An fp32 student against a bf16 teacher (the inference path's logits), without widening the teacher's [rows, V]
    /// logits first: the same arithmetic, and the same bits, as the fp32 pass on the widened values.
    /// </summary>
    public void Dense(DevicePointer<float> student, int ldStudent, DevicePointer<Bf16> teacher, int ldTeacher, int rows, int vocab,
        KdTeacherStatistics stats, KdStudentRows settings, GpuStream stream) =>
        LaunchDense(denseF32Bf16, student.Raw, ldStudent, teacher.Raw, ldTeacher, rows, vocab, stats, settings, stream);

    /// <summary>bf16 student and teacher; sums in fp32, the gradient rounded to bf16.</summary>
    public void Dense(DevicePointer<Bf16> student, int ldStudent, DevicePointer<Bf16> teacher, int ldTeacher, int rows, int vocab,
        KdTeacherStatistics stats, KdStudentRows settings, GpuStream stream) =>
        LaunchDense(denseBf16, student.Raw, ldStudent, teacher.Raw, ldTeacher, rows, vocab, stats, settings, stream);

    /// <summary>Fused student pass against a sparse teacher: indices [rows, K], tempered bucket log-probabilities [rows, K+1].</summary>
    public void Sparse(DevicePointer<float> student, int ldStudent, int rows, int vocab, DevicePointer<int> indices, DevicePointer<float> bucketLogProbs, int topK,
        KdStudentRows settings, GpuStream stream) =>
        LaunchSparse(sparseF32, student.Raw, ldStudent, rows, vocab, indices, bucketLogProbs, topK, settings, stream);

    /// <summary>bf16 student against a sparse teacher.</summary>
    public void Sparse(DevicePointer<Bf16> student, int ldStudent, int rows, int vocab, DevicePointer<int> indices, DevicePointer<float> bucketLogProbs, int topK,
        KdStudentRows settings, GpuStream stream) =>
        LaunchSparse(sparseBf16, student.Raw, ldStudent, rows, vocab, indices, bucketLogProbs, topK, settings, stream);

    private void LaunchTeacher(GpuFunction function, DevicePtr teacher, int ldTeacher, int rows, int vocab, float inverseTemperature, KdTeacherStatistics stats, GpuStream stream)
    {
        CheckRows(rows, vocab, ldTeacher, nameof(ldTeacher));
        var args = new KernelArgs();
        args.Add(teacher);
        args.Add(ldTeacher);
        args.Add(rows);
        args.Add(vocab);
        args.Add(inverseTemperature);
        args.Add(stats.Max);
        args.Add(stats.LogSum);
        args.Add(stats.Entropy);
        Launch(function, LaunchShapes.RowPerBlock(rows), stream, args);
    }

    private void LaunchDense(GpuFunction function, DevicePtr student, int ldStudent, DevicePtr teacher, int ldTeacher, int rows, int vocab,
        KdTeacherStatistics stats, KdStudentRows settings, GpuStream stream)
    {
        CheckRows(rows, vocab, ldStudent, nameof(ldStudent));
        CheckRows(rows, vocab, ldTeacher, nameof(ldTeacher));
        var args = new KernelArgs();
        args.Add(student);
        args.Add(ldStudent);
        args.Add(teacher);
        args.Add(ldTeacher);
        args.Add(rows);
        args.Add(vocab);
        args.Add(stats.Max);
        args.Add(stats.LogSum);
        args.Add(stats.Entropy);
        AddSettings(ref args, settings);
        Launch(function, LaunchShapes.RowPerBlock(rows), stream, args);
    }

    private void LaunchSparse(GpuFunction function, DevicePtr student, int ldStudent, int rows, int vocab, DevicePointer<int> indices,
        DevicePointer<float> bucketLogProbs, int topK, KdStudentRows settings, GpuStream stream)
    {
        CheckRows(rows, vocab, ldStudent, nameof(ldStudent));
        if (topK < 1 || topK > MaxTopK || topK > vocab)
            throw new ArgumentOutOfRangeException(nameof(topK), topK, $"must be in [1, min({MaxTopK}, vocab = {vocab})]");
        var args = new KernelArgs();
        args.Add(student);
        args.Add(ldStudent);
        args.Add(rows);
        args.Add(vocab);
        args.Add(indices);
        args.Add(bucketLogProbs);
        args.Add(topK);
        AddSettings(ref args, settings);
        Launch(function, LaunchShapes.RowPerBlock(rows), stream, args);
    }

    private static void AddSettings(ref KernelArgs args, KdStudentRows settings)
    {
        args.Add(settings.KdCoefficient);
        args.Add(settings.Labels);
        args.Add(settings.CeCoefficient);
        args.Add(settings.InverseTemperature);
        args.Add(settings.Reverse ? 1 : 0);
        args.Add(settings.RowKl);
        args.Add(settings.RowCe);
    }

    // The student row may be wider than the common vocabulary (padding columns get zero gradient), never narrower.
    private static void CheckRows(int rows, int vocab, int leading, string name)
    {
        AtLeast(rows, 0, nameof(rows));
        AtLeast(vocab, 1, nameof(vocab));
        AtLeast(leading, vocab, name);
    }
}
