using E3.Backends;
using E3.Backends.Gpu;
using E3.Model.Decoder;

namespace E3.Model.Training;

/// <summary>Where the trainer's backend keeps its tensors, which decides what shares one memory.</summary>
internal enum PlanTarget
{
    /// <summary>The cpu backend: the trainer, the teacher, the loss and the optimizer share host memory.</summary>
    Cpu,

    /// <summary>A GPU backend (cuda, emu): the trainer and the teacher are on the device, the optimizer on the host.</summary>
    Gpu,
}

/// <summary>A dense distillation teacher run beside the trainer (<c>e3 distill</c> or <c>e3 search</c> without a teacher cache).</summary>
/// <param name="Activations">The teacher's activation dtype: BF16 for the bf16 sibling backend a GPU trainer gives it
/// by default, F32 for a teacher on the trainer's own backend (the cpu, or <c>--teacher-dtype f32</c>).</param>
/// <param name="Model">The teacher's config when it is not the student's (a student of another depth: <c>distill --student</c>).</param>
/// <param name="IsStudent">The teacher is the trained model itself with every gate 1 (the mask search): it holds no
/// weights of its own, and on the cpu its forward is the trainer's.</param>
/// <param name="Weights">How an F32 teacher, on the trainer's backend, keeps its matrices when not as the student does
/// (a checkpoint of another dtype). A BF16 teacher keeps bf16.</param>
internal sealed record DistillationPlan(DType Activations, ModelConfig? Model = null, bool IsStudent = false, DType? Weights = null);

/// <summary>
/// Bytes a training job allocates for [batch, sequence] tokens, by kind, computed from the config alone (no weights are
/// read), so a 32B model can be planned from its config.json.
/// <list type="bullet">
/// <item>The trainer, on its backend (<see cref="GatedDecoderTrainer"/>): weights (projection matrices and embedding in
/// the weight dtype, norms and biases fp32); on a GPU, the one buffer bf16 matrices are widened into for the fp32
/// kernels; fp32 gradients of the trainable tensors (allocated with the trainer); every layer's input, the layer tapes
/// (one shared tape with checkpointing) and the head's outputs; the backward scratch. The trainer keeps its activations
/// and scratch between steps.</item>
/// <item>A dense teacher (<see cref="DistillationPlan"/>), the student's model or another, with every layer: its weights, its forward
/// (KV caches, activations and [rows, V] logits, freed but for the logits once it ends) and its logits, held through
/// the student's step.</item>
/// <item>The loss's head: the chunk of logits a loss fused with the LM head forms on a GPU; on the host, the logits a
/// dense loss downloads, or the head, its gradient and the hidden states the host's fused loss works on.</item>
/// <item>The optimizer, on the host in Train mode: the fp32 values of every trainable tensor, their gathered gradients
/// and AdamW's two moments, which libtorch keeps over the same arrays (16 bytes a trained parameter).</item>
/// </list>
/// </summary>
internal sealed record TrainingMemoryPlan(
    PlanTarget Target, long Weights, long WeightWidening, long SavedActivations, long BackwardScratch, long Gradients,
    long TeacherWeights, long TeacherForward, long TeacherLogits, long LossHead, bool LossHeadOnDevice,
    long OptimizerValues, long OptimizerGradients, long OptimizerState)
{
    /// <summary>The trainer's steady state on its backend: weights, widening buffer, gradients, activations and scratch.</summary>
    public long Trainer => Weights + WeightWidening + Gradients + SavedActivations + BackwardScratch;

    long BackendLossHead => LossHeadOnDevice || Target == PlanTarget.Cpu ? LossHead : 0;

    /// <summary>
    /// The backend while the teacher runs its forward, before the student's: the trainer's buffers and the loss's scratch
    /// are kept from the last step.
    /// </summary>
    public long TeacherStage => TeacherLogits == 0 ? 0 : Trainer + TeacherWeights + TeacherForward + BackendLossHead;

    /// <summary>The backend through the student's forward and backward: the trainer, the teacher's weights and logits, the loss's head.</summary>
    public long Backward => Trainer + TeacherWeights + TeacherLogits + BackendLossHead;

    /// <summary>The optimizer's host arrays: values, gradients and moments.</summary>
    public long Optimizer => OptimizerValues + OptimizerGradients + OptimizerState;

    /// <summary>The most the backend holds at once: device memory on a GPU, 0 on the cpu (whose backend is host memory, in <see cref="HostPeak"/>).</summary>
    public long DevicePeak => Target == PlanTarget.Gpu ? Math.Max(TeacherStage, Backward) : 0;

    /// <summary>The most host memory the job holds: the optimizer and the host's part of the loss, plus, on the cpu, the backend's peak.</summary>
    public long HostPeak => Optimizer + (Target == PlanTarget.Cpu ? Math.Max(TeacherStage, Backward) : LossHeadOnDevice ? 0 : LossHead);

    /// <summary>Where <paramref name="backend"/> keeps its tensors: a GPU backend's are on the device, any other's on the host.</summary>
    public static PlanTarget TargetOf(IBackend backend) => backend is GpuBackend ? PlanTarget.Gpu : PlanTarget.Cpu;

    /// <summary>Bytes of fp32 logits one chunk of a loss fused with the LM head may hold (<c>DistillationObjective</c> uses this).</summary>
    public const long FusedChunkBudgetBytes = 64L << 20;

    /// <summary>Plans one training step: forward, backward and, in Train mode, the AdamW update.</summary>
    /// <param name="config">The model trained (and the teacher's, unless <see cref="DistillationPlan.Model"/> gives another).</param>
    /// <param name="sequence">Tokens per sequence T.</param>
    /// <param name="batch">Sequences B.</param>
    /// <param name="options">Mode, checkpointing and freeze patterns, as the trainer gets them.</param>
    /// <param name="weightType">How projection matrices are kept (F32 or BF16).</param>
    /// <param name="fusedHead">The loss is fused with the LM head (distillation; the search on a GPU): the trainer holds no [rows, V] logits.</param>
    /// <param name="target">The backend's kind.</param>
    /// <param name="teacher">A dense teacher run beside the trainer; null for none (a teacher cache, or no distillation).</param>
    public static TrainingMemoryPlan Create(ModelConfig config, int sequence, int batch, TrainingOptions options, DType weightType,
        bool fusedHead = false, PlanTarget target = PlanTarget.Cpu, DistillationPlan? teacher = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(options);
        if (sequence <= 0) throw new ArgumentOutOfRangeException(nameof(sequence), $"--seq {sequence} must be positive");
        if (batch <= 0) throw new ArgumentOutOfRangeException(nameof(batch), $"--batch {batch} must be positive");
        if (weightType is not (DType.F32 or DType.BF16)) throw new ArgumentException($"weights are kept as F32 or BF16, not {weightType}", nameof(weightType));
        if (teacher != null)
        {
            if (teacher.Activations is not (DType.F32 or DType.BF16)) throw new ArgumentException($"a teacher computes in F32 or BF16, not {teacher.Activations}", nameof(teacher));
            if (teacher.Activations == DType.BF16 && target != PlanTarget.Gpu)
                throw new ArgumentException("a bf16 teacher runs on a GPU only: the cpu backend computes in f32", nameof(teacher));
            if (teacher.Weights is { } w && (w is not (DType.F32 or DType.BF16) || teacher.Activations != DType.F32))
                throw new ArgumentException($"a teacher's own weight dtype is F32 or BF16, for an F32 teacher, not {w} for {teacher.Activations}", nameof(teacher));
            if (teacher.IsStudent && (teacher.Activations != DType.F32 || teacher.Model != null || teacher.Weights != null))
                throw new ArgumentException("a teacher that is the student computes as the student does, in f32", nameof(teacher));
        }
        try
        {
            return Plan(config, checked((long)sequence * batch), options, weightType, fusedHead, target, teacher);
        }
        catch (OverflowException)
        {
            throw new ArgumentOutOfRangeException(nameof(sequence),
                $"--seq {sequence} x --batch {batch}: the plan exceeds 2^63 bytes (8 EiB); no machine holds that");
        }
    }

    // Elements of the model's matrices and vectors, and of its largest matrix.
    static (long Matrices, long Vectors, long Largest) Count(ModelConfig config)
    {
        long matrices = 0, vectors = 0, largest = 0;
        foreach (var (_, shape) in WeightNames.Expected(config))
        {
            long elements = shape.Aggregate(1L, (a, d) => checked(a * d));
            if (shape.Length == 2)
            {
                matrices += elements;
                largest = Math.Max(largest, elements);
            }
            else vectors += elements;
        }
        return (matrices, vectors, largest);
    }

    static TrainingMemoryPlan Plan(ModelConfig config, long rows, TrainingOptions options, DType weightType, bool fusedHead,
        PlanTarget target, DistillationPlan? teacher)
    {
        checked
        {
            long h = config.HiddenSize, v = config.VocabSize;

            var filter = options.Parameters();
            filter.RequireLayers(config);
            string headName = config.TieWordEmbeddings ? WeightNames.Embedding : WeightNames.LmHead;
            bool headTrained = options.Mode == TrainingMode.Train && filter.IsTrainable(headName);
            var (matrices, vectors, largestMatrix) = Count(config);
            long weights = matrices * weightType.SizeInBytes() + 4 * vectors, gradients = 0;
            if (options.Mode == TrainingMode.Train)
                foreach (var (name, shape) in WeightNames.Expected(config))
                    if (filter.IsTrainable(name)) gradients += 4 * shape.Aggregate(1L, (a, d) => a * d);
            // GpuBackend widens a bf16 matrix into one fp32 buffer at each use (its trainer computes in fp32).
            long widening = target == PlanTarget.Gpu && weightType == DType.BF16 ? 4 * largestMatrix : 0;

            long tapes = (options.Checkpointing ? 1 : config.NumLayers) * LayerTape.Bytes(config, rows);
            long logits = fusedHead ? 0 : 4 * rows * v;
            // Layer inputs, running hidden, final normed hidden, logits.
            long saved = 4 * rows * h * (config.NumLayers + 2) + logits + tapes;
            // dlogits, dnormed, dhidden, per-layer gradient scratch.
            long scratch = logits + 8 * rows * h + LayerGradScratch.Bytes(config, rows);

            long teacherWeights = 0, teacherForward = 0, teacherLogits = 0;
            if (teacher != null)
            {
                var t = teacher.Model ?? config;
                long act = teacher.Activations.SizeInBytes();
                var (teacherMatrices, teacherVectors, teacherLargest) = Count(t);
                // A bf16 sibling stores matrices in bf16 and keeps a bf16 copy of each fp32 norm and bias; a teacher on
                // the trainer's backend keeps them as the student does, and shares its widening buffer.
                var teacherWeightType = teacher.Weights ?? weightType;
                teacherWeights = teacher.IsStudent ? 0
                    : teacher.Activations == DType.BF16 ? 2 * teacherMatrices + 6 * teacherVectors
                    : teacherMatrices * teacherWeightType.SizeInBytes() + 4 * teacherVectors;
                if (teacher.Activations == DType.F32 && target == PlanTarget.Gpu && teacherWeightType == DType.BF16)
                    widening = 4 * Math.Max(weightType == DType.BF16 ? largestMatrix : 0, teacherLargest);
                long th = t.HiddenSize;
                long kvWidth = (long)t.NumKvHeads * t.HeadDim, qWidth = (long)t.NumHeads * t.HeadDim;
                long caches = 2L * t.NumLayers * rows * kvWidth;
                long activations = rows * (4 * th + 2 * qWidth + 2 * kvWidth + 2L * t.IntermediateSize);
                long head = rows * (2 * th + v);
                // The search's teacher on the cpu is the trainer's own forward with every gate 1, its logits downloaded.
                teacherForward = teacher.IsStudent && target == PlanTarget.Cpu ? 0 : act * (caches + activations + head);
                // On the cpu the loss takes the logits to the host as fp32 and the backend's copy goes.
                teacherLogits = (target == PlanTarget.Gpu ? act : 4) * rows * v;
            }

            bool lossHeadOnDevice = fusedHead && target == PlanTarget.Gpu;
            long chunk = 4 * v * Math.Clamp(FusedChunkBudgetBytes / (4 * v), 1, rows); // one chunk of a fused loss's fp32 logits
            long lossHead =
                !fusedHead ? 4 * rows * v // the logits the loss downloads and turns into their gradient
                // The chunk, then per row: coefficient, label, KL, CE and the teacher's three statistics.
                : lossHeadOnDevice ? chunk + 28 * rows
                // The host's fused loss: a copy of the head, the hidden states and their gradient, the chunk; with the
                // head trained, its gradient and the loop's side gradient too.
                : 4 * v * h * (headTrained ? 3 : 1) + 8 * rows * h + chunk;

            long optimizerValues = options.Mode == TrainingMode.Train ? gradients : 0;
            var plan = new TrainingMemoryPlan(target, weights, widening, saved, scratch, gradients, teacherWeights, teacherForward, teacherLogits,
                lossHead, lossHeadOnDevice, optimizerValues, optimizerValues, 2 * optimizerValues);
            // Every sum, so that no figure printed is a wrapped-around negative.
            _ = plan.TeacherStage + plan.Backward + plan.HostPeak + plan.DevicePeak;
            return plan;
        }
    }
}
