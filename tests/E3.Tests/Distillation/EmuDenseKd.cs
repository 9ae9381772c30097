using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Pruning.Distillation;
using E3.Tests.GpuBackend;

namespace E3.Tests.Distillation;

/// <summary>
/// The dense KD loss on the emulated device through <see cref="EntropyKdKernels"/>, as a trainer drives it: teacher
/// pass, token weights on the host from the device's entropies, then the fused student pass.
/// </summary>
internal static class EmuDenseKd
{
    /// <param name="Loss">Σ_t kd_coef_t · KL_t + CE coefficient · CE_t over the valid rows.</param>
    /// <param name="Gradient">The student buffer afterwards: [rows, ld], the gradient in the first vocab columns.</param>
    public sealed record Result(double Loss, float[] Gradient);

    /// <summary>
    /// Student and teacher are [rows, ld] fp32 with the logits in the first <paramref name="vocab"/> columns. With
    /// <paramref name="bf16Teacher"/> the teacher's values (which must be bf16 values) go to the device as bf16, and the
    /// bf16 teacher pass and the fp32-student/bf16-teacher student pass run.
    /// </summary>
    public static Result Run(EmuDeviceScope emu, List<DeviceBuffer> buffers, float[] student, float[] teacher, int ld, int rows, int vocab,
        KdPlan plan, KdOptions options, bool bf16Teacher = false)
    {
        GpuStream stream = emu.Stream.Handle;
        using var kernels = new EntropyKdKernels(emu.Device);
        float inverseTemperature = (float)(1 / options.Temperature);
        var zs = emu.Upload<float>(buffers, student);
        var stats = new KdTeacherStatistics(Zeros(emu, buffers, rows), Zeros(emu, buffers, rows), Zeros(emu, buffers, rows));
        DevicePointer<float> zt = default;
        DevicePointer<Bf16> ztBf16 = default;
        if (bf16Teacher)
        {
            var bits = teacher.Select(v => BitConverter.SingleToUInt32Bits(v) is var u && (u & 0xFFFF) == 0 ? new Bf16((ushort)(u >> 16))
                : throw new ArgumentException($"{v} is not a bf16 value", nameof(teacher))).ToArray();
            ztBf16 = emu.Upload<Bf16>(buffers, bits);
            kernels.TeacherPass(ztBf16, ld, rows, vocab, inverseTemperature, stats, stream);
        }
        else
        {
            zt = emu.Upload<float>(buffers, teacher);
            kernels.TeacherPass(zt, ld, rows, vocab, inverseTemperature, stats, stream);
        }
        var entropy = emu.Download(stats.Entropy, rows).Select(h => (double)h).ToArray();
        var weights = TokenWeights.Compute(entropy, plan.Valid, options);
        var coefficients = new float[rows];
        var codes = new int[rows];
        double tau2 = options.Temperature * options.Temperature;
        for (int t = 0; t < rows; t++)
        {
            coefficients[t] = plan.Valid[t] ? (float)(options.KdFraction * tau2 * weights[t] / plan.ValidCount) : 0f;
            codes[t] = plan.Valid[t] ? plan.Labels[t] : -2;
        }
        var settings = new KdStudentRows(emu.Upload<float>(buffers, coefficients), emu.Upload<int>(buffers, codes), (float)plan.CeCoefficient,
            inverseTemperature, options.Direction == KlDirection.Reverse, Zeros(emu, buffers, rows), Zeros(emu, buffers, rows));
        if (bf16Teacher) kernels.Dense(zs, ld, ztBf16, ld, rows, vocab, stats, settings, stream);
        else kernels.Dense(zs, ld, zt, ld, rows, vocab, stats, settings, stream);

        var grad = emu.Download(zs, rows * ld);
        var kl = emu.Download(settings.RowKl, rows);
        var ce = emu.Download(settings.RowCe, rows);
        double loss = 0;
        for (int t = 0; t < rows; t++)
            if (codes[t] != -2) loss += coefficients[t] * (double)kl[t] + (codes[t] >= 0 ? plan.CeCoefficient * ce[t] : 0);
        return new Result(loss, grad);
    }

    private static DevicePointer<float> Zeros(EmuDeviceScope emu, List<DeviceBuffer> buffers, int count) => emu.Upload<float>(buffers, new float[count]);
}
