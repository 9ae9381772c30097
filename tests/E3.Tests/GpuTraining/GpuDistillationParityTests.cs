using E3.Backends;
using E3.Backends.Cpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Pruning.Distill;
using E3.Pruning.Distillation;
using E3.Tests.Distill;
using E3.Tests.Distillation;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.GpuTraining;

/// <summary>
/// One distillation step of a pruned student against its unpruned teacher (<see cref="DistillationObjective"/> with a
/// <see cref="ModelTeacherSource"/>) on GpuBackend over the emulator, where the teacher's logits stay on the device and
/// the loss runs fused with the LM head there, against the same step on the CPU backend, where both are computed on the
/// host: the loss and every weight gradient, including the head's.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class GpuDistillationParityTests(EmuFixture fixture) : IDisposable
{
    // As in GpuTrainerParityTests: the two backends differ in summation order only (GEMM blocking, block reductions, the
    // KD pass's fp32 per-thread sums against the host's double block sums), ~1e-6 relative per step over a few dozen
    // chained steps; 1e-4 leaves a margin of ten while a wrong coefficient, row or missing head term is O(1) off.
    const double Bound = 1e-4;

    // The loss is held to an absolute bound instead. It is a KL between the teacher's and the student's
    // log-probabilities, each term of size log V (5.6 for V = 264), so the backends' rounding shows in it as an absolute
    // error of a few 1e-6 (fp32 logits that differ by ~1e-6 relative, through a log-sum-exp), whatever the KL's own size:
    // on a KL of 0.02 that is ~1e-4 of it, and which side of 1e-4 it lands on depends on the CPU's SIMD width (the
    // CPU backend's AVX2 and SSE paths sum in different orders). 1e-5 is 0.05% of this loss, still far below a real
    // defect (a wrong row, coefficient or temperature factor moves the loss by a sizeable fraction of itself).
    const double LossBound = 1e-5;

    readonly EmuDeviceScope _emu = EmuDeviceScope.After(fixture);

    sealed record Step(double Loss, Dictionary<string, float[]> Gradients, IReadOnlyCollection<string> SideNames);

    [Theory]
    [InlineData(true, 0.6)]   // tied: the head's gradient and the embedding's meet in one tensor
    [InlineData(false, 1.0)]  // a separate lm_head, pure distillation
    public void AStepMatchesTheCpuBackend(bool tied, double kdFraction)
    {
        using var dir = new TempDir("e3-gpu-distill");
        DistillTestModels.Write(dir["teacher"], layers: 3, seed: 7, tied: tied);
        var options = new KdOptions { Temperature = 2, KdFraction = kdFraction };
        var want = Run(new CpuBackend(2), dir["teacher"], options);
        var got = Run(new E3.Backends.Gpu.GpuBackend(_emu.Device, DType.F32, ownsDevice: false), dir["teacher"], options);

        string head = tied ? WeightNames.Embedding : WeightNames.LmHead;
        Assert.Equal([head], want.SideNames);
        Assert.Empty(got.SideNames); // on the device the head's gradient goes into the trainer's own buffer
        Assert.True(Math.Abs(got.Loss - want.Loss) <= LossBound, $"loss {got.Loss} vs {want.Loss}");
        Assert.Equal(want.Gradients.Keys.Order(), got.Gradients.Keys.Order());
        Assert.Contains(head, want.Gradients.Keys);
        foreach (var (name, values) in want.Gradients)
        {
            double error = KdTestData.RelativeError(got.Gradients[name], values);
            Assert.True(error <= Bound, $"{name}: {error:E3}");
        }
        Assert.Contains(want.Gradients[head], g => Math.Abs(g) > 1e-6f);
    }

    [Fact]
    public void ABf16TeacherOnASiblingBackendGivesTheStepOfItsOwnLogits()
    {
        // What `e3 distill --device cuda|emu` does by default: the teacher runs the bf16 inference path on a sibling
        // backend of the fp32 trainer, and the loss reads its bf16 logits where they are (GpuBackend.Reads).
        using var dir = new TempDir("e3-gpu-distill-bf16");
        DistillTestModels.Write(dir["teacher"], layers: 3, seed: 7, tied: false);
        var options = new KdOptions { Temperature = 2, KdFraction = 0.8 };
        using var trainer = new E3.Backends.Gpu.GpuBackend(_emu.Device, DType.F32, ownsDevice: false);
        using var sibling = trainer.CreateSibling(DType.BF16);
        using var teacher = DecoderModel.Load(dir["teacher"], sibling, WeightPrecision.BF16);
        DenseTeacher logits;
        using (var onDevice = new BackendDenseTeacher(teacher, Inputs, Batch)) logits = onDevice.ToHost();

        var onSibling = Run(trainer, dir["teacher"], options, new ModelTeacherSource(teacher));
        // The same logits from the host, widened to fp32 (exactly): the kernels reading bf16 must give the same step bit for bit.
        var fromHost = Run(trainer, dir["teacher"], options, new FixedTeacher(logits));
        Assert.Equal(fromHost.Loss, onSibling.Loss);
        foreach (var (name, values) in fromHost.Gradients)
            Assert.True(values.AsSpan().SequenceEqual(onSibling.Gradients[name]), name);

        // And the CPU backend's step given those logits, within the fp32 bounds above.
        using var cpuBackend = new CpuBackend(2);
        var cpu = Run(cpuBackend, dir["teacher"], options, new FixedTeacher(logits));
        Assert.True(Math.Abs(onSibling.Loss - cpu.Loss) <= LossBound, $"loss {onSibling.Loss} vs {cpu.Loss}");
        foreach (var (name, values) in cpu.Gradients)
            Assert.True(KdTestData.RelativeError(onSibling.Gradients[name], values) <= Bound, name);

        // The teacher really computed in bf16: its logits are not the fp32 forward's.
        using var fp32 = new CpuBackend(2);
        using var reference = DecoderModel.Load(dir["teacher"], fp32);
        var exact = reference.Forward(Inputs.AsSpan(0, Sequence), LayerMask.All(3));
        Assert.Contains(exact.Zip(logits.Float32.Span[..exact.Length].ToArray()), p => p.First != p.Second);
    }

    /// <summary>Always the same teacher, for a step fed logits computed elsewhere.</summary>
    sealed class FixedTeacher(DenseTeacher teacher) : IKdTeacherSource
    {
        public int Vocab => teacher.Vocab;
        public string Source => "fixed logits";
        public KdTeacher For(long batchIndex, ReadOnlySpan<int> inputs, int batch) => teacher;
    }

    const int Batch = 2, Sequence = 11;
    static readonly int[] Inputs = Enumerable.Range(0, Batch * Sequence).Select(i => (i * 37 + 5) % 250).ToArray();

    static Step Run(IBackend backend, string folder, KdOptions options)
    {
        using (backend)
        {
            using var teacher = DecoderModel.Load(folder, backend);
            return Run(backend, folder, options, new ModelTeacherSource(teacher));
        }
    }

    /// <summary>One step of a student loaded from <paramref name="folder"/> on <paramref name="backend"/> against <paramref name="source"/>.</summary>
    static Step Run(IBackend backend, string folder, KdOptions options, IKdTeacherSource source)
    {
        using var student = DecoderModel.Load(folder, backend);
        string[] freeze = ["model.layers.1.*"];
        var gates = LayerMask.Dropping(3, [1]).Gates.ToArray();
        var objective = new DistillationObjective(source, student, gates, options, freeze);
        using var trainer = new GatedDecoderTrainer(student, new TrainingOptions { Mode = TrainingMode.Train, Freeze = freeze });
        const int batch = Batch, sequence = Sequence;
        var inputs = Inputs;
        var targets = inputs.Skip(1).Append(options.IgnoreIndex).ToArray();
        targets[sequence - 1] = options.IgnoreIndex;
        var side = objective.SideGradientNames.ToDictionary(n => n, n => new float[student.Config.VocabSize * student.Config.HiddenSize]);
        trainer.ZeroWeightGradients();
        double loss = objective.ForwardBackward(trainer, 0, inputs, targets, batch, side);
        var gradients = new Dictionary<string, float[]>();
        foreach (var (name, tensor) in trainer.WeightGradients)
        {
            var values = new float[tensor.ElementCount];
            backend.Download(tensor, values);
            if (side.TryGetValue(name, out var extra))
                for (int i = 0; i < values.Length; i++) values[i] += extra[i];
            gradients[name] = values;
        }
        return new Step(loss, gradients, objective.SideGradientNames);
    }

    public void Dispose() => _emu.Dispose();
}
