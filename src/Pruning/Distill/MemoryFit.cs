using E3.Backends;
using E3.Backends.Gpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.IO;
using E3.Model.Training;

namespace E3.Pruning.Distill;

/// <summary>
/// A training job's memory plan set against the machine before anything is loaded. A plan larger than the GPU would end
/// in CUDA_ERROR_OUT_OF_MEMORY once the weights are up, after minutes of loading; it is refused here instead, saying
/// what would shrink it. The host only gets a warning: its limit is softer (swap, other processes) and the plan says
/// nothing of the data and the tokenizer.
/// </summary>
internal static class MemoryFit
{
    /// <summary>How a training backend keeps the matrices of a model loaded as stored, by its config: bf16 as is, anything else as fp32.</summary>
    public static DType StoredWeights(ModelConfig config) => config.TorchDtype is "bfloat16" ? DType.BF16 : DType.F32;

    /// <summary>
    /// As <see cref="StoredWeights(ModelConfig)"/>, but from the dtype the checkpoint's header gives the embedding, which
    /// is what the loader goes by (a config's torch_dtype may be missing or say otherwise). Only headers are read. A
    /// folder with no checkpoint falls back to the config; loading it fails next, naming what is missing.
    /// </summary>
    public static DType StoredWeights(string folder, ModelConfig config)
    {
        if (!File.Exists(Path.Combine(folder, SafeTensorsCheckpoint.SingleFileName)) && !File.Exists(Path.Combine(folder, SafeTensorsCheckpoint.IndexFileName)))
            return StoredWeights(config);
        using var checkpoint = SafeTensorsCheckpoint.Open(folder);
        return checkpoint.Contains(WeightNames.Embedding) && checkpoint.Get(WeightNames.Embedding).DType == SafeTensorsDType.BF16 ? DType.BF16 : DType.F32;
    }

    /// <summary>Throws when <paramref name="plan"/> needs more than the device's memory; warns when it comes close, or when the host side exceeds what this process may use.</summary>
    /// <param name="command">Names the job in the messages.</param>
    /// <param name="plan">The job's plan.</param>
    /// <param name="backend">The backend it will run on.</param>
    /// <param name="warn">Told each warning, one line without a prefix.</param>
    /// <param name="checkpointing">Whether the job recomputes its layers already (the advice then leaves that out).</param>
    /// <param name="canFreeze">Whether the command takes --freeze, which the advice then names.</param>
    /// <param name="shapeFixed">Whether the job belongs to a run whose --seq and --batch a resume keeps (e3 prune): the
    /// advice then says to lower them in a new run.</param>
    public static void Check(string command, TrainingMemoryPlan plan, IBackend backend, Action<string> warn, bool checkpointing, bool canFreeze,
        bool shapeFixed = false)
    {
        var remedies = new List<string>();
        if (!checkpointing) remedies.Add("add --activation-checkpointing");
        if (canFreeze) remedies.Add("freeze more tensors (--freeze)");
        remedies.Add(shapeFixed ? "lower --seq or --batch in a new run (another --out: a resumed run keeps its own)" : "lower --seq or --batch");
        string shrink = (remedies.Count == 1 ? remedies[0] : string.Join(", ", remedies[..^1]) + " or " + remedies[^1])
            + " (e3 plan shows where the memory goes)";
        if (backend is GpuBackend gpu)
        {
            long device = gpu.Device.Info.TotalMemoryBytes;
            if (plan.DevicePeak > device)
                throw new InvalidOperationException($"{command} needs {GiB(plan.DevicePeak)} of device memory by its plan, more than the " +
                    $"{GiB(device)} that {gpu.Device.Info.Name} has: {shrink}");
            // The driver's context, cuBLAS's workspace and the kernels' own scratch come on top of the plan.
            if (plan.DevicePeak > 0.9 * device)
                warn($"{command} plans {GiB(plan.DevicePeak)} of the {GiB(device)} of device memory; " +
                    "the driver, cuBLAS and the kernels' scratch need some of the rest");
        }
        long host = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (plan.HostPeak > host)
            warn($"{command} plans {GiB(plan.HostPeak)} of host memory, more than the {GiB(host)} this process may use: {shrink}");
    }

    /// <summary>
    /// The mask search's plan on <paramref name="backend"/>: the model frozen behind its gates, the loss fused with the LM
    /// head on a GPU, and the live teacher (the model itself) when the steps, the KL initialisation or the final swaps run it.
    /// </summary>
    public static void CheckSearch(string modelFolder, ModelConfig config, int sequence, int batch, bool checkpointing, bool liveTeacher,
        IBackend backend, Action<string> warn, bool shapeFixed = false)
    {
        var target = TrainingMemoryPlan.TargetOf(backend);
        Check("search", TrainingMemoryPlan.Create(config, sequence, batch,
            new TrainingOptions { Mode = TrainingMode.Frozen, Checkpointing = checkpointing }, StoredWeights(modelFolder, config),
            fusedHead: target == PlanTarget.Gpu, target, liveTeacher ? new DistillationPlan(DType.F32, IsStudent: true) : null),
            backend, warn, checkpointing, canFreeze: false, shapeFixed);
    }

    /// <summary>Distillation's plan on <paramref name="backend"/>, as <see cref="Distiller"/> sets the run up (before any weights load).</summary>
    /// <param name="canFreeze">Whether the caller takes --freeze (e3 distill does, e3 prune does not), which the advice then names.</param>
    /// <param name="shapeFixed">Whether a resume keeps the run's --seq and --batch (e3 prune).</param>
    public static void CheckDistill(DistillationSetup setup, DistillationRequest request, IBackend backend, Action<string> warn, bool canFreeze,
        bool shapeFixed = false) =>
        Check("distill", TrainingMemoryPlan.Create(setup.StudentConfig, request.Settings.Sequence, request.Settings.Batch,
            new TrainingOptions { Mode = TrainingMode.Train, Freeze = setup.Freeze, Checkpointing = request.ActivationCheckpointing },
            StoredWeights(setup.StudentFolder, setup.StudentConfig), fusedHead: true, TrainingMemoryPlan.TargetOf(backend),
            setup.TeacherBackend is { } teacherBackend ? new DistillationPlan(teacherBackend.ActivationType, setup.TeacherConfig,
                Weights: teacherBackend == backend ? StoredWeights(request.Teacher, setup.TeacherConfig) : null) : null),
            backend, warn, request.ActivationCheckpointing, canFreeze, shapeFixed);

    static string GiB(long bytes) => $"{bytes / (double)(1L << 30):F1} GiB";
}
