using System.Globalization;
using System.Text;
using E3.Interop.Kernels;
using E3.Pruning.Distillation;
using E3.Pruning.Masking;

namespace E3.Pruning.Search;

/// <summary>How the mask logits α start.</summary>
public enum AlphaInit
{
    /// <summary>From drop-one-layer KL importance (<see cref="LayerImportance.ToLogits"/>): important layers start likely kept.</summary>
    Kl,

    /// <summary>All zeros: every layer equally likely.</summary>
    Uniform,
}

/// <summary>
/// Everything that decides the trajectory of a <see cref="MaskSearch"/>. Two runs with equal options, model and data
/// produce bit-identical α on the same machine and thread count; <see cref="Fingerprint"/> is what a checkpoint is
/// checked against on resume.
/// </summary>
public sealed record SearchOptions
{
    /// <summary>k: layers the final mask keeps.</summary>
    public required int Keep { get; init; }

    /// <summary>Layers kept at step 0 of the curriculum; null = halfway between all layers and <see cref="Keep"/>
    /// (rounded up), so the search starts at half the target pruning and ramps to it.</summary>
    public int? WarmupKeep { get; init; }

    /// <summary>Optimisation steps (one batch each).</summary>
    public required long Steps { get; init; }

    /// <summary>Steps of the keep-count ramp; null = half of <see cref="Steps"/> (at least 1).</summary>
    public long? CurriculumSteps { get; init; }

    /// <summary>Gumbel-TopK samples (hard masks) per step; dα is their average.</summary>
    public int Samples { get; init; } = 4;

    /// <summary>AdamW learning rate on α (constant).</summary>
    public double LearningRate { get; init; } = 0.05;

    /// <summary>τ0, the Gumbel temperature at step 0.</summary>
    public double Tau0 { get; init; } = 1.0;

    /// <summary>τ floor, reached at the end of the search.</summary>
    public double TauMin { get; init; } = 0.1;

    /// <summary>Annealing curve from <see cref="Tau0"/> to <see cref="TauMin"/> over <see cref="Steps"/>.</summary>
    public AnnealKind TauSchedule { get; init; } = AnnealKind.Exponential;

    /// <summary>The relaxation the straight-through backward differentiates.</summary>
    public GumbelRelaxation Relaxation { get; init; } = GumbelRelaxation.SoftTopK;

    /// <summary>α initialisation.</summary>
    public AlphaInit Init { get; init; } = AlphaInit.Kl;

    /// <summary>Calibration batches (the first ones of the data order) for drop-one KL importance.</summary>
    public int InitBatches { get; init; } = 2;

    /// <summary>
    /// Final refinement: besides the top-k of α, try every swap of one of the <c>RefineSwaps</c> lowest-α kept layers
    /// with one of the <c>RefineSwaps</c> highest-α dropped layers, and keep the candidate with the lowest KL to the full
    /// model on the calibration batches (α's top-k wins ties). The Gumbel search ranks layers well but leaves
    /// near-ties at the k-th place to sampling noise; scoring those few candidates exactly settles them. 0 turns it off.
    /// It only shapes the final mask, so it is not part of the checkpoint fingerprint.
    /// </summary>
    public int RefineSwaps { get; init; } = 3;

    /// <summary>Keys the data windows and the Gumbel noise.</summary>
    public ulong Seed { get; init; }

    /// <summary>The distillation loss (entropy-weighted KD; linear weights by default).</summary>
    public KdOptions Kd { get; init; } = new();

    /// <summary>
    /// Keep only each layer's input through the forward and recompute the layer for the gate gradients: one layer's
    /// activations instead of every layer's. The recomputation is the same arithmetic, so α is the same bits; it is not
    /// part of the checkpoint fingerprint.
    /// </summary>
    public bool ActivationCheckpointing { get; init; }

    /// <summary>The keep count at step 0 once <see cref="WarmupKeep"/>'s default is resolved.</summary>
    public int ResolvedWarmupKeep(int layers) => WarmupKeep ?? (layers + Keep + 1) / 2;

    /// <summary>The curriculum length once its default is resolved.</summary>
    public long ResolvedCurriculumSteps => CurriculumSteps ?? Math.Max(1, Steps / 2);

    /// <summary>Throws <see cref="ArgumentException"/> naming the option (as the CLI spells it) and its value.</summary>
    public void Validate(int layers)
    {
        if (Keep < 1 || Keep > layers) throw new ArgumentException($"--keep: {Keep} is out of range 1..{layers} (the model has {layers} layers)");
        if (Keep == layers) throw new ArgumentException($"--keep: {Keep} keeps every layer of the model; nothing to search");
        int warmup = ResolvedWarmupKeep(layers);
        if (warmup < Keep || warmup > layers) throw new ArgumentException($"--warmup-keep: {warmup} is out of range {Keep}..{layers}");
        if (Steps < 1) throw new ArgumentException($"--tokens: gives {Steps} steps; at least one batch is needed");
        if (ResolvedCurriculumSteps < 1) throw new ArgumentException($"--curriculum-steps: {ResolvedCurriculumSteps} must be at least 1");
        if (Samples < 1) throw new ArgumentException($"--samples: {Samples} must be at least 1");
        if (!(LearningRate > 0) || !double.IsFinite(LearningRate)) throw new ArgumentException($"--lr: {LearningRate} must be finite and > 0");
        if (!(Tau0 > 0) || !double.IsFinite(Tau0)) throw new ArgumentException($"--tau0: {Tau0} must be finite and > 0");
        if (!(TauMin > 0) || TauMin > Tau0) throw new ArgumentException($"--tau-min: {TauMin} must be > 0 and <= --tau0 = {Tau0}");
        if (InitBatches < 1) throw new ArgumentException($"--init-batches: {InitBatches} must be at least 1");
        if (RefineSwaps < 0) throw new ArgumentException($"--refine-swaps: {RefineSwaps} must be >= 0");
        if (!Enum.IsDefined(TauSchedule)) throw new ArgumentException($"--tau-schedule: {TauSchedule} is unknown");
        if (!Enum.IsDefined(Init)) throw new ArgumentException($"--init: {Init} is unknown");
        Kd.Validate();
    }

    /// <summary>
    /// A canonical text of every setting that changes the result, plus the model, data and teacher identities the
    /// caller passes: a checkpoint whose fingerprint differs belongs to another search.
    /// </summary>
    internal string Fingerprint(string modelHash, string dataIdentity, string teacherIdentity, int sequenceLength, int batch)
    {
        var text = new StringBuilder();
        void Add(string key, object value) => text.Append(key).Append('=').Append(Convert.ToString(value, CultureInfo.InvariantCulture)).Append(';');
        Add("model", modelHash);
        Add("data", dataIdentity);
        Add("teacher", teacherIdentity);
        Add("seq", sequenceLength);
        Add("batch", batch);
        Add("keep", Keep);
        Add("warmup_keep", WarmupKeep?.ToString(CultureInfo.InvariantCulture) ?? "auto");
        Add("steps", Steps);
        Add("curriculum_steps", ResolvedCurriculumSteps);
        Add("samples", Samples);
        Add("lr", LearningRate.ToString("R", CultureInfo.InvariantCulture));
        Add("tau0", Tau0.ToString("R", CultureInfo.InvariantCulture));
        Add("tau_min", TauMin.ToString("R", CultureInfo.InvariantCulture));
        Add("tau_schedule", TauSchedule);
        Add("relaxation", Relaxation);
        Add("init", Init);
        Add("init_batches", InitBatches);
        Add("seed", Seed);
        Add("kd", Kd);
        return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
    }
}
