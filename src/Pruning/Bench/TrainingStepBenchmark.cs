using System.Diagnostics;
using E3.Backends.Gpu;
using E3.Interop.Kernels.Bench;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Pruning.Distill;
using E3.Pruning.Distillation;

namespace E3.Pruning.Bench;

/// <summary>Which loss a training step computes.</summary>
internal enum StepLoss
{
    /// <summary>Distillation from the unpruned model (its forward is part of the step), fused with the LM head.</summary>
    Distillation,

    /// <summary>Next-token cross-entropy on dense logits.</summary>
    CrossEntropy,
}

/// <summary>What <see cref="TrainingStepBenchmark.Run"/> measured.</summary>
/// <param name="Device">The backend's name.</param>
/// <param name="Loss">The loss of the step.</param>
/// <param name="Batch">B.</param>
/// <param name="Sequence">T.</param>
/// <param name="Layers">The model's layers.</param>
/// <param name="Dropped">The layers the pruned student skips.</param>
/// <param name="Repeats">Timed steps (after the warm-up ones).</param>
/// <param name="MedianSeconds">Median seconds of one step.</param>
/// <param name="Flops">FLOPs of one step by <see cref="TrainingStepBenchmark.StepFlops"/>.</param>
/// <param name="FirstLoss">The loss of the first (warm-up) step, before any timing: the same on every backend up to rounding.</param>
/// <param name="Plan">The memory plan of the same step (<see cref="TrainingMemoryPlan"/>, without the optimizer's host arrays).</param>
/// <param name="DevicePeakBytes">On a GPU, the most device memory e3 held at once during the steps, weights included
/// (<see cref="E3.Interop.Gpu.DeviceAllocations"/>): the figure <see cref="TrainingMemoryPlan.DevicePeak"/> plans. Null on the cpu.</param>
internal sealed record TrainingStepResult(string Device, StepLoss Loss, int Batch, int Sequence, int Layers, int[] Dropped, int Repeats,
    double MedianSeconds, long Flops, double FirstLoss, TrainingMemoryPlan Plan, long? DevicePeakBytes)
{
    /// <summary>Tokens trained per second.</summary>
    public double TokensPerSecond => Batch * (double)Sequence / MedianSeconds;

    /// <summary>Achieved TFLOP/s by the FLOP count.</summary>
    public double Teraflops => Flops / MedianSeconds / 1e12;
}

/// <summary>
/// Times one training micro-step of a pruned student as <c>e3 distill</c> and <c>e3 train</c> run it: the forward and
/// the backward through the retained layers with weight gradients (the dropped layers neither run nor train), with
/// the loss, and for distillation the teacher's forward. The optimizer step (AdamW on the host, once per GradAccum
/// micro-steps) is not part of it. Warm-up steps first, then the median of the timed ones; the backend is
/// synchronised before each clock stops.
/// </summary>
internal static class TrainingStepBenchmark
{
    /// <summary>Runs the benchmark on random tokens.</summary>
    /// <param name="student">The model trained (and, for distillation, a second copy of it is <paramref name="teacher"/>).</param>
    /// <param name="teacher">The unpruned teacher for <see cref="StepLoss.Distillation"/>; null for cross-entropy.</param>
    /// <param name="dropped">The layers the student skips.</param>
    /// <param name="loss">The loss.</param>
    /// <param name="batch">B.</param>
    /// <param name="sequence">T.</param>
    /// <param name="repeats">Timed steps (≥ 1).</param>
    /// <param name="warmup">Untimed steps first (≥ 1: the first allocates the trainer's buffers).</param>
    public static TrainingStepResult Run(DecoderModel student, DecoderModel? teacher, LayerMask dropped, StepLoss loss, int batch, int sequence,
        int repeats, int warmup = 2)
    {
        ArgumentNullException.ThrowIfNull(student);
        ArgumentOutOfRangeException.ThrowIfLessThan(repeats, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(warmup, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(sequence, 2);
        var c = student.Config;
        if (dropped.Count != c.NumLayers) throw new ArgumentException($"the mask has {dropped.Count} gates; the model has {c.NumLayers} layers");
        string[] freeze = dropped.Dropped.Select(l => $"model.layers.{l}.*").ToArray();
        var gates = dropped.Gates.ToArray();
        ITrainingObjective objective = loss switch
        {
            StepLoss.Distillation => new DistillationObjective(new ModelTeacherSource(teacher ?? throw new ArgumentNullException(nameof(teacher),
                "distillation needs the teacher")), student, gates, new KdOptions(), freeze),
            _ => new CrossEntropyObjective(gates),
        };
        var options = new TrainingOptions { Mode = TrainingMode.Train, Freeze = freeze };
        // The matrices' dtype as loaded (the embedding is one of them), and the backend's kind.
        var plan = TrainingMemoryPlan.Create(c, sequence, batch, options, student.Weights.Embedding.DType,
            fusedHead: loss == StepLoss.Distillation, TrainingMemoryPlan.TargetOf(student.Backend),
            loss == StepLoss.Distillation ? new DistillationPlan(teacher!.Backend.ActivationType, teacher.Config) : null);
        var allocations = (student.Backend as GpuBackend)?.Device.Allocations;
        allocations?.ResetPeak(); // from the loaded weights on
        using var trainer = new GatedDecoderTrainer(student, options);
        var random = new Random(1);
        var tokens = new int[batch * (sequence + 1)];
        for (int i = 0; i < tokens.Length; i++) tokens[i] = random.Next(c.VocabSize);
        var inputs = new int[batch * sequence];
        var targets = new int[batch * sequence];
        for (int b = 0; b < batch; b++)
        {
            tokens.AsSpan(b * (sequence + 1), sequence).CopyTo(inputs.AsSpan(b * sequence));
            tokens.AsSpan(b * (sequence + 1) + 1, sequence).CopyTo(targets.AsSpan(b * sequence));
        }
        var side = objective.SideGradientNames.ToDictionary(n => n, n => new float[(long)c.VocabSize * c.HiddenSize]);
        double firstLoss = double.NaN;
        var seconds = new double[repeats];
        for (int i = 0; i < warmup + repeats; i++)
        {
            trainer.ZeroWeightGradients();
            foreach (var g in side.Values) Array.Clear(g);
            student.Backend.Synchronize();
            var clock = Stopwatch.StartNew();
            double value = objective.ForwardBackward(trainer, i, inputs, targets, batch, side);
            student.Backend.Synchronize();
            if (i == 0) firstLoss = value;
            if (i >= warmup) seconds[i - warmup] = clock.Elapsed.TotalSeconds;
        }
        return new TrainingStepResult(student.Backend.Name, loss, batch, sequence, c.NumLayers, dropped.Dropped.ToArray(), repeats,
            BenchStatistics.Median(seconds), StepFlops(c, dropped, loss, batch, sequence), firstLoss, plan, allocations?.PeakBytes);
    }

    /// <summary>
    /// FLOPs of one step, counting matrix products only (norms, activations and the loss's row passes are a few FLOPs per
    /// element, negligible beside them). A projection with P weights costs 2·P per token forward and 4·P backward (input
    /// and weight gradients); attention 4·D per causal pair and head forward and 14·D backward plus 2·D per row and head
    /// (the flash-style recomputation: see KernelWork.AttentionBackward); the LM head 2·V·H per token forward and 4·V·H
    /// backward. Distillation adds the teacher's forward through every layer.
    /// </summary>
    public static long StepFlops(ModelConfig c, LayerMask dropped, StepLoss loss, int batch, int sequence)
    {
        long tokens = (long)batch * sequence, pairs = (long)batch * sequence * (sequence + 1) / 2;
        long qw = (long)c.NumHeads * c.HeadDim, kvw = (long)c.NumKvHeads * c.HeadDim, h = c.HiddenSize;
        long projection = h * (qw + 2 * kvw) + qw * h + 3 * h * c.IntermediateSize;
        long attentionForward = 4L * c.HeadDim * c.NumHeads * pairs;
        long attentionBackward = 14L * c.HeadDim * c.NumHeads * pairs + 2 * tokens * c.NumHeads * c.HeadDim;
        long head = (long)c.VocabSize * h * tokens;
        int kept = dropped.KeptCount;
        long student = kept * (6 * projection * tokens + attentionForward + attentionBackward) + 6 * head;
        long teacher = loss == StepLoss.Distillation ? c.NumLayers * (2 * projection * tokens + attentionForward) + 2 * head : 0;
        return student + teacher;
    }
}
