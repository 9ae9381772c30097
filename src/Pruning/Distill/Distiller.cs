using System.Text.Json.Nodes;
using E3.Backends;
using E3.Backends.Gpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.IO;
using E3.Pruning.Distillation;
using E3.Pruning.Masks;
using E3.Pruning.TeacherCache;

namespace E3.Pruning.Distill;

/// <summary>What <see cref="Distiller.Run(ComputeDevice, DistillationRequest, Action{TrainingProgress}?, CancellationToken)"/> trains.</summary>
public sealed record DistillationRequest
{
    /// <summary>The teacher: a Hugging Face model folder, run with every layer.</summary>
    public required string Teacher { get; init; }

    /// <summary>
    /// A mask.json (<see cref="MaskFile"/>): the student is the teacher's own weights with these layers dropped (not
    /// computed, not trained). Give this or <see cref="Student"/>.
    /// </summary>
    public string? Mask { get; init; }

    /// <summary>A separate student model folder with the teacher's vocabulary (e.g. <c>e3 export</c>'s pruned checkpoint), which runs every one of its layers. Give this or <see cref="Mask"/>.</summary>
    public string? Student { get; init; }

    /// <summary>
    /// The training data: a .bin or .npy file of token ids, or text, which the student's tokenizer encodes. Read after the
    /// models are loaded; the output may not replace it.
    /// </summary>
    public required string Data { get; init; }

    /// <summary>The output folder: the healed model as a Hugging Face checkpoint, written to a temporary folder and renamed when complete.</summary>
    public required string Output { get; init; }

    /// <summary>Whether an existing, non-empty <see cref="Output"/> may be replaced.</summary>
    public bool ReplaceOutput { get; init; }

    /// <summary>A top-K teacher cache of <see cref="Data"/> (<c>e3 teacher-cache</c>) to read instead of running the teacher.</summary>
    public string? TeacherCache { get; init; }

    /// <summary>
    /// The dtype the live teacher computes in: null for the default (bf16 beside an fp32 trainer on a GPU, which needs
    /// half the memory; the trainer's own fp32 on the CPU), <see cref="DType.F32"/> to run it on the trainer's backend.
    /// </summary>
    public DType? TeacherActivations { get; init; }

    /// <summary>Steps, batch, sequence length, learning-rate schedule, clipping, seed.</summary>
    public TrainingSettings Settings { get; init; } = new();

    /// <summary>The entropy-weighted KD loss: token weighting, temperature, direction, cross-entropy mix.</summary>
    public KdOptions Kd { get; init; } = new();

    /// <summary>Globs of Hugging Face tensor names not to train (e.g. <c>model.embed_tokens.*</c>).</summary>
    public IReadOnlyList<string> Freeze { get; init; } = [];

    /// <summary>A folder for checkpoints (every <see cref="TrainingSettings.CheckpointEvery"/> steps), or null for none.</summary>
    public string? CheckpointFolder { get; init; }

    /// <summary>Continue from <see cref="CheckpointFolder"/>'s latest checkpoint; a checkpoint of another run is refused.</summary>
    public bool Resume { get; init; }

    /// <summary>Recompute each layer in the backward instead of keeping its activations: far less memory, a third more forward work, the same results.</summary>
    public bool ActivationCheckpointing { get; init; }
}

/// <summary>
/// Entropy-aware adaptive distillation: heals a pruned student with a KL loss to the full teacher weighted per token by
/// the teacher's entropy, from the live teacher or a top-K teacher cache, with checkpoints that resume bit for bit on
/// the CPU. The engine's <c>e3 distill</c> runs exactly this.
/// </summary>
public static class Distiller
{
    /// <summary>Trains <paramref name="request"/>'s student on <paramref name="device"/> (opened with <see cref="ComputeDeviceOptions.Training"/>) and writes the healed model.</summary>
    /// <param name="device">Where to train; a GPU device must be opened for training (fp32 activations).</param>
    /// <param name="request">The teacher, the student, the data and the settings.</param>
    /// <param name="progress">Called after every optimizer step.</param>
    /// <param name="cancel">Stops the run between steps; the last checkpoint stays, so the run can be resumed.</param>
    /// <returns>The steps, losses and time, and what was trained.</returns>
    /// <exception cref="ArgumentException">A request that cannot be run (both or neither of mask and student, a setting out of range), naming the field and value.</exception>
    /// <exception cref="ModelFormatException">A config.json or checkpoint that cannot be read, or a student whose vocabulary differs from the teacher's.</exception>
    /// <exception cref="TeacherCacheException">The teacher cache was made for another model or other data.</exception>
    /// <exception cref="TrainingCheckpointException">With <see cref="DistillationRequest.Resume"/>: a checkpoint of another run, or one that cannot be read.</exception>
    /// <exception cref="TokenFileException">A .bin data file that cannot be read as token ids.</exception>
    /// <exception cref="NpyFormatException">A .npy data file that cannot be read as token ids.</exception>
    public static TrainingOutcome Run(ComputeDevice device, DistillationRequest request, Action<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (device.Backend.ActivationType != DType.F32)
            throw new ArgumentException($"the {device.Name} device was opened for inference (bf16 activations); distillation's backward pass needs one opened with {nameof(ComputeDeviceOptions.Training)}", nameof(device));
        return Run(device.Backend, request, progress, cancel, beforeLoad: null);
    }

    /// <summary>
    /// <see cref="Run(ComputeDevice, DistillationRequest, Action{TrainingProgress}?, CancellationToken)"/> on a backend;
    /// <paramref name="beforeLoad"/> sees the plan before any weights are loaded (the CLI checks that it fits the device).
    /// </summary>
    internal static TrainingOutcome Run(IBackend backend, DistillationRequest request, Action<TrainingProgress>? progress, CancellationToken cancel,
        Action<DistillationSetup>? beforeLoad)
    {
        var (teacherConfig, studentConfig, mask) = Check(request);
        var r = request;
        string studentFolder = r.Student ?? r.Teacher;
        var freeze = r.Freeze.ToList();
        // A separate student runs every one of its own layers.
        LayerMask gates = LayerMask.All(studentConfig.NumLayers);
        var identity = new JsonObject { ["command"] = "distill", ["teacher_config"] = teacherConfig.Hash(), ["kd"] = KdJson(r.Kd) };
        Dictionary<string, string>? extra = null;
        if (mask != null)
        {
            gates = mask.ToLayerMask();
            freeze.AddRange(mask.Dropped.Select(i => $"model.layers.{i}.*"));
            identity["mask"] = new JsonArray(mask.Kept.Select(k => (JsonNode)k).ToArray());
            extra = new Dictionary<string, string> { ["mask.json"] = r.Mask! };
        }

        using var cache = r.TeacherCache == null ? null : TeacherCacheReader.Open(r.TeacherCache);
        var (teacherBackend, teacherPrecision) = cache == null ? TeacherBackend(backend, r.TeacherActivations) : (null, default);
        using var ownTeacherBackend = teacherBackend;
        beforeLoad?.Invoke(new DistillationSetup(studentConfig, studentFolder, teacherConfig, freeze, cache == null ? teacherBackend ?? backend : null));
        using var student = DecoderModel.Load(studentFolder, backend);
        int[] tokens = DataTokens.Read(r.Data, studentFolder, student.Config.VocabSize);
        using var teacher = cache == null ? DecoderModel.Load(r.Teacher, teacherBackend ?? backend, teacherPrecision) : null;
        IKdTeacherSource source;
        IBatchSource? batches = null;
        if (cache != null)
        {
            string teacherId = TeacherCacheHeader.ModelIdOf(r.Teacher);
            if (!cache.Header.IsForModel(teacherId))
                throw new TeacherCacheException(r.TeacherCache!, "model id", $"'{cache.Header.ModelId}': the cache was made for another model than --teacher '{teacherId}'");
            var cached = new TeacherCacheBatches(cache, tokens, r.Data, r.Settings.Batch, r.Settings.Seed, r.Kd.IgnoreIndex);
            if (cached.SequenceLength != r.Settings.Sequence)
                throw new ArgumentException($"--seq: {r.Settings.Sequence} differs from the sequence length {cached.SequenceLength} of the teacher cache {r.TeacherCache}");
            source = cached;
            batches = cached;
            identity["teacher_cache"] = $"{cache.Header.DataChecksum:x8}/{cache.Header.K}/{cache.Header.ModelId}";
        }
        else source = new ModelTeacherSource(teacher!);
        var job = new TrainingJob
        {
            Student = student, StudentFolder = studentFolder, Freeze = freeze,
            Objective = new DistillationObjective(source, student, gates.Gates.ToArray(), r.Kd, freeze), Batches = batches,
            Tokens = tokens, DataSource = r.Data, Settings = r.Settings, CheckpointFolder = r.CheckpointFolder, Resume = r.Resume,
            ActivationCheckpointing = r.ActivationCheckpointing,
            Output = r.Output, ReplaceOutput = r.ReplaceOutput, Inputs = [r.Data, r.Teacher, r.TeacherCache, r.Mask], Identity = identity,
            ExtraOutputFiles = extra,
        };
        return TrainingRunner.Run(job, progress, cancel);
    }

    /// <summary>
    /// Everything about <paramref name="request"/> that can be refused without a device or any weights: the fields, the
    /// settings, both configs, the mask against the teacher, and the vocabularies. The CLI calls it before it opens the
    /// device, so that a bad request is reported as itself, not as a missing GPU.
    /// </summary>
    internal static (ModelConfig Teacher, ModelConfig Student, MaskFile? Mask) Check(DistillationRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var r = request;
        if ((r.Student == null) == (r.Mask == null))
            throw new ArgumentException($"give exactly one of {nameof(DistillationRequest.Student)} and {nameof(DistillationRequest.Mask)}", nameof(request));
        if (r.TeacherCache != null && r.TeacherActivations != null)
            throw new ArgumentException($"{nameof(DistillationRequest.TeacherActivations)} {r.TeacherActivations}: the teacher is not run with the teacher cache {r.TeacherCache}", nameof(request));
        if (r.Settings is null || r.Kd is null || r.Freeze is null)
            throw new ArgumentException($"{nameof(DistillationRequest.Settings)}, {nameof(DistillationRequest.Kd)} and {nameof(DistillationRequest.Freeze)} may not be null", nameof(request));
        r.Settings.Validate();
        r.Kd.Validate();
        var teacherConfig = ModelConfig.Load(r.Teacher);
        var studentConfig = r.Student == null ? teacherConfig : ModelConfig.Load(r.Student);
        MaskFile? mask = null;
        if (r.Mask != null)
        {
            mask = MaskFile.Load(r.Mask);
            mask.EnsureMatches(teacherConfig, r.Mask);
        }
        DistillationObjective.RequireSameVocabulary(teacherConfig.VocabSize, teacherConfig.SourcePath, studentConfig);
        return (teacherConfig, studentConfig, mask);
    }

    /// <summary>
    /// The backend a dense teacher runs on beside the student's <paramref name="training"/> backend, and the weight
    /// precision to load it with. On cuda and emu the trainer keeps fp32 activations, and a teacher loaded there would run
    /// fp32 GEMMs over matrices widened at each use, and hold fp32 KV caches, activations and logits; a frozen teacher
    /// needs neither, so by default it gets a bf16 sibling backend on the same device, whose bf16 logits the loss reads
    /// where they are. <see cref="DType.F32"/> keeps the teacher on <paramref name="training"/> (Backend null).
    /// </summary>
    internal static (GpuBackend? Backend, WeightPrecision Precision) TeacherBackend(IBackend training, DType? activations) => (training, activations) switch
    {
        (GpuBackend { ActivationType: DType.F32 } gpu, null or DType.BF16) => (gpu.CreateSibling(DType.BF16), WeightPrecision.BF16),
        (_, DType.F32) or (not GpuBackend, null) => (null, WeightPrecision.AsStored),
        (_, DType.BF16) => throw new ArgumentException($"a bf16 teacher needs a cuda or emu device (the {training.Name} backend computes in f32)"),
        _ => throw new ArgumentException($"teacher activations {activations} are not one of BF16, F32"),
    };

    // The KD options in the run's fingerprint. The four the CLI sets are always there; the others only where they differ
    // from their defaults, so that a checkpoint written before they could be set keeps its fingerprint.
    static JsonObject KdJson(KdOptions kd)
    {
        var json = new JsonObject
        {
            ["temperature"] = kd.Temperature, ["fraction"] = kd.KdFraction, ["weighting"] = kd.Weighting.ToString(), ["direction"] = kd.Direction.ToString(),
        };
        var d = new KdOptions();
        if (kd.SoftmaxBeta != d.SoftmaxBeta) json["softmax_beta"] = kd.SoftmaxBeta;
        if (kd.MinWeight != d.MinWeight) json["min_weight"] = kd.MinWeight;
        if (kd.MaxWeight != d.MaxWeight) json["max_weight"] = kd.MaxWeight;
        if (kd.IgnoreIndex != d.IgnoreIndex) json["ignore_index"] = kd.IgnoreIndex;
        if (kd.MaskNonFinite != d.MaskNonFinite) json["mask_non_finite"] = kd.MaskNonFinite;
        if (kd.MaxPaddingColumns != d.MaxPaddingColumns) json["max_padding_columns"] = kd.MaxPaddingColumns;
        return json;
    }
}

/// <summary>What a distillation run will hold, known before any weights are loaded.</summary>
/// <param name="StudentConfig">The student's config.</param>
/// <param name="StudentFolder">The folder the student loads from.</param>
/// <param name="TeacherConfig">The teacher's config.</param>
/// <param name="Freeze">The tensors not trained (the mask's dropped layers included).</param>
/// <param name="TeacherBackend">Where the live teacher runs; null when a teacher cache replaces it.</param>
internal sealed record DistillationSetup(ModelConfig StudentConfig, string StudentFolder, ModelConfig TeacherConfig, IReadOnlyList<string> Freeze, IBackend? TeacherBackend);
