using System.Text.Json.Nodes;
using E3.Backends;
using E3.Interop.Kernels;
using E3.Model;
using E3.Pruning.Baselines;

namespace E3.Pruning.Pipeline;

/// <summary>
/// What <see cref="Pruner.Run"/> does: the model and data, how many layers to drop, and the budget of each stage. The
/// defaults are those of <c>e3 prune</c>, whose options these are (the messages name them as such).
/// </summary>
public sealed record PruneRequest
{
    /// <summary>The full model: a Hugging Face folder (config.json, safetensors, tokenizer.json for text data).</summary>
    public required string Model { get; init; }

    /// <summary>Training text (encoded with the model's tokenizer) or a .bin/.npy file of token ids.</summary>
    public required string Data { get; init; }

    /// <summary>Held-out evaluation data; null holds out the last <see cref="Holdout"/> of <see cref="Data"/> instead.</summary>
    public string? EvalData { get; init; }

    /// <summary>The fraction of <see cref="Data"/> held out (from its end) when <see cref="EvalData"/> is null; in (0, 1).</summary>
    public double Holdout { get; init; } = 0.1;

    /// <summary>The fraction of layers to drop (round(ratio·L) of them). Give this or <see cref="Keep"/>.</summary>
    public double? Prune { get; init; }

    /// <summary>The layers to keep. Give this or <see cref="Prune"/>.</summary>
    public int? Keep { get; init; }

    /// <summary>
    /// The output folder: masks, checkpoints, the healed models, report.md and report.json. It is also the run's
    /// checkpoint: with <see cref="Resume"/> a run continues from its first unfinished stage.
    /// </summary>
    public required string Output { get; init; }

    /// <summary>The baselines to compare with: any of bi, angular, last, random and drop-one-kl.</summary>
    public IReadOnlyList<string> Baselines { get; init; } = ["bi", "angular", "last", "random", "drop-one-kl"];

    /// <summary>Tokens the baselines score layers on; the search's KL initialisation and final refinement use as many.</summary>
    public long CalibrationTokens { get; init; } = 2048;

    /// <summary>Tokens the mask search trains on.</summary>
    public long SearchTokens { get; init; } = 16384;

    /// <summary>Tokens each distillation trains on.</summary>
    public long DistillTokens { get; init; } = 40960;

    /// <summary>Held-out tokens scored per model, in whole windows of 256 (so at least this many); 0 scores them all.</summary>
    public long EvalTokens { get; init; } = 16384;

    /// <summary>Tokens per training sequence.</summary>
    public int Sequence { get; init; } = 128;

    /// <summary>Sequences per step.</summary>
    public int Batch { get; init; } = 4;

    /// <summary>Gumbel-TopK masks sampled per search step.</summary>
    public int Samples { get; init; } = 4;

    /// <summary>AdamW learning rate of the mask logits.</summary>
    public double SearchLearningRate { get; init; } = 0.05;

    /// <summary>Peak AdamW learning rate of the distillation.</summary>
    public double DistillLearningRate { get; init; } = 1e-3;

    /// <summary>
    /// K of an offline top-K teacher cache (the paper's ~10 logits a token, at most 64): the teacher is run once over as
    /// many training sequences as the larger of the search's and a distillation's budget, spread evenly over the
    /// training split, and the search's steps and the distillations train on those sequences, reading the teacher's K
    /// largest log-probabilities per token instead of running it at every step (the cache is built in the output
    /// folder; a teacher too large to sit beside its student needs this). 0, the default, runs the live teacher with its
    /// full distribution on windows drawn from the whole split.
    /// </summary>
    public int TeacherCacheK { get; init; }

    /// <summary>Heal the best baseline's mask too, so that the healed models compare fairly (on by default).</summary>
    public bool DistillBestBaseline { get; init; } = true;

    /// <summary>Seeds the data windows, the Gumbel noise and the random baseline.</summary>
    public ulong Seed { get; init; }

    /// <summary>Speedup bench: prompt tokens.</summary>
    public int BenchPrefill { get; init; } = 128;

    /// <summary>Speedup bench: generated tokens (0 measures the prefill only).</summary>
    public int BenchDecode { get; init; } = 32;

    /// <summary>Speedup bench: timed repeats, of which the median is reported.</summary>
    public int BenchRepeats { get; init; } = 5;

    /// <summary>
    /// Where to compute, one of <see cref="ComputeDevice.Names"/>. Each stage opens the device itself: for inference
    /// (baselines, comparisons, the speedup) or for training (search, distillation), and releases it when done.
    /// </summary>
    public string Device { get; init; } = "cpu";

    /// <summary>CPU threads; 0 uses every core.</summary>
    public int Threads { get; init; }

    /// <summary>Search and distillation run their fp32 GEMMs with TF32 operands (cuda and emu only).</summary>
    public bool Tf32 { get; init; }

    /// <summary>Search and distillation recompute each layer in the backward: the same results, one layer's activations instead of all.</summary>
    public bool ActivationCheckpointing { get; init; }

    /// <summary>
    /// Continue the run in <see cref="Output"/> from its first unfinished stage, on the data split it started with;
    /// without it an existing, non-empty folder is refused. A run resumed with another target or budget is refused too,
    /// naming the option (the device, threads, TF32, activation checkpointing and the bench may change).
    /// </summary>
    public bool Resume { get; init; }

    /// <summary>Refuses what no stage could run, before any stage runs (and before the model is read), naming the option and value.</summary>
    internal void Validate()
    {
        if (string.IsNullOrEmpty(Model)) throw new ArgumentException("--model: a model folder is required");
        if (string.IsNullOrEmpty(Data)) throw new ArgumentException("--data: a data file is required");
        if (string.IsNullOrEmpty(Output)) throw new ArgumentException("--out: an output folder is required");
        if ((Prune == null) == (Keep == null)) throw new ArgumentException("give exactly one of --prune RATIO and --keep K");
        if (!(Holdout is > 0 and < 1)) throw new ArgumentException($"--holdout: {Holdout} must lie in (0, 1)");
        if (Baselines is null) throw new ArgumentException("--baselines may not be null");
        foreach (var m in Baselines)
            if (!BaselineMethods.Names.Contains(m))
                throw new ArgumentException($"--baselines: '{m}' is not a baseline ({string.Join(", ", BaselineMethods.Names)})");
        if (Baselines.Distinct().Count() != Baselines.Count) throw new ArgumentException($"--baselines: '{string.Join(" ", Baselines)}' names a baseline twice");
        AtLeast("--calibration-tokens", CalibrationTokens, 1);
        AtLeast("--search-tokens", SearchTokens, 1);
        AtLeast("--distill-tokens", DistillTokens, 1);
        AtLeast("--eval-tokens", EvalTokens, 0);
        AtLeast("--seq", Sequence, 2);
        AtLeast("--batch", Batch, 1);
        AtLeast("--samples", Samples, 1);
        AtLeast("--bench-prefill", BenchPrefill, 1);
        AtLeast("--bench-decode", BenchDecode, 0);
        AtLeast("--bench-repeats", BenchRepeats, 1);
        AtLeast("--threads", Threads, 0);
        AtLeast("--teacher-cache-k", TeacherCacheK, 0);
        // The GPU's KD loss keeps a row's K entries in shared memory; refused on every device, so that a run can move to one.
        if (TeacherCacheK > EntropyKdKernels.MaxTopK)
            throw new ArgumentException($"--teacher-cache-k: {TeacherCacheK} exceeds {EntropyKdKernels.MaxTopK}, the most the KD loss reads per token");
        if (!(SearchLearningRate > 0) || !double.IsFinite(SearchLearningRate)) throw new ArgumentException($"--search-lr: {SearchLearningRate} must be finite and positive");
        if (!(DistillLearningRate > 0) || !double.IsFinite(DistillLearningRate)) throw new ArgumentException($"--distill-lr: {DistillLearningRate} must be finite and positive");
        if (!ComputeDevice.Names.Contains(Device)) throw new ArgumentException($"--device: '{Device}' is not one of {string.Join(", ", ComputeDevice.Names)}");
        if (Tf32 && Device is not ("cuda" or "emu")) throw new ArgumentException($"--tf32: the {Device} device has no tensor cores; it needs cuda or emu");
    }

    /// <summary>
    /// The layers to keep of the model <paramref name="config"/> describes; a target out of range, or a teacher cache's K
    /// above its vocabulary, is refused naming the option.
    /// </summary>
    internal int KeepOf(ModelConfig config)
    {
        int layers = config.NumLayers;
        if (TeacherCacheK > config.VocabSize)
            throw new ArgumentException($"--teacher-cache-k: {TeacherCacheK} exceeds the model's vocab_size {config.VocabSize}");
        int keep = Keep ?? layers - (int)Math.Round(Prune!.Value * layers, MidpointRounding.AwayFromZero);
        if (keep < 1 || keep >= layers)
            throw new ArgumentException(Keep != null
                ? $"--keep: {keep} must lie in 1..{layers - 1} for a model with {layers} layers"
                : $"--prune: {Prune} keeps {keep} of {layers} layers; it must drop at least one and keep at least one");
        return keep;
    }

    /// <summary>
    /// What decides a run's results besides its data split (which the output folder keeps): a resumed run must match it.
    /// Keyed by option name.
    /// </summary>
    internal JsonObject Identity(ModelConfig config, int keep) => new()
    {
        ["model"] = config.Hash(),
        ["keep"] = keep,
        ["baselines"] = string.Join(" ", Baselines),
        ["calibration-tokens"] = CalibrationTokens,
        ["search-tokens"] = SearchTokens,
        ["distill-tokens"] = DistillTokens,
        ["eval-tokens"] = EvalTokens,
        ["seq"] = Sequence,
        ["batch"] = Batch,
        ["samples"] = Samples,
        ["search-lr"] = SearchLearningRate,
        ["distill-lr"] = DistillLearningRate,
        ["no-baseline-distill"] = !DistillBestBaseline,
        ["teacher-cache-k"] = TeacherCacheK,
        ["seed"] = Seed,
    };

    static void AtLeast(string option, long value, long least)
    {
        if (value < least) throw new ArgumentException($"{option}: {value} must be at least {least}");
    }
}
