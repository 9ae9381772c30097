using E3.Pruning.Masks;
using E3.Pruning.Search;

namespace E3.Pruning.Pipeline;

/// <summary>
/// E3's whole job, as <c>e3 prune</c> runs it: split the data, choose layers with every baseline and with the learned
/// Gumbel-TopK search, compare the masks on held-out text, heal E3's mask (and the best baseline's) by entropy-weighted
/// distillation, export the healed pruned checkpoints, compare them, measure the speedup, and write report.md and
/// report.json. Every stage checkpoints into the output folder, so a run that stops can be resumed.
/// </summary>
public static class Pruner
{
    /// <summary>Runs <paramref name="request"/> to the end, or from its first unfinished stage with <see cref="PruneRequest.Resume"/>.</summary>
    /// <param name="request">The model, the data, the target and each stage's budget.</param>
    /// <param name="progress">Called on the calling thread as stages start, advance, warn and finish.</param>
    /// <param name="searchFinished">
    /// Called once the mask search has finished in this run and its mask is saved (not when a resumed run finds it done),
    /// with its final state and mask: the loss and keep-probability histories, e.g. to plot them. A search.png it writes
    /// into the output folder is shown in report.md.
    /// </param>
    /// <param name="cancel">Stops the run between stages, or inside one: the search and the distillations stop after a whole
    /// step and save a checkpoint of the steps done first, the baselines and comparisons after a pass; so a resumed run
    /// loses no training step.</param>
    /// <returns>The learned mask, where the healed model and the reports are, and the figures of the report.</returns>
    /// <exception cref="ArgumentException">A request no stage could run (a target out of range, an unknown baseline or device, a budget below 1), naming the option and value, before any stage runs; an output folder that holds another run without <see cref="PruneRequest.Resume"/>; or a resumed run whose target or budgets differ from the ones it started with.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancel"/> was signalled.</exception>
    /// <exception cref="E3.Model.ModelFormatException">A config.json the run cannot use.</exception>
    /// <exception cref="InvalidDataException">Data with too few tokens for a training sequence or for evaluation.</exception>
    /// <exception cref="PruneStageException">A stage failed; its cause is the inner exception. Every earlier stage's result stays, so the run resumes from this stage.</exception>
    public static PruneOutcome Run(PruneRequest request, Action<PruneProgress>? progress = null, Action<SearchState, MaskFile>? searchFinished = null,
        CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        return new PrunePipeline(request, progress ?? (_ => { }), searchFinished, cancel).Run();
    }
}

/// <summary>What a stage of <see cref="Pruner.Run"/> reports.</summary>
public enum PruneEvent
{
    /// <summary>The stage begins; the message says what it runs.</summary>
    Started,

    /// <summary>The stage advanced to <see cref="PruneProgress.Done"/> of <see cref="PruneProgress.Total"/>.</summary>
    Advanced,

    /// <summary>A warning, e.g. a memory plan close to the device's size.</summary>
    Warning,

    /// <summary>The stage finished and its result is stored.</summary>
    Finished,

    /// <summary>A resumed run found the stage finished earlier and kept its result.</summary>
    Kept,
}

/// <summary>One report of <see cref="Pruner.Run"/>'s progress.</summary>
/// <param name="Stage">The stage, e.g. "baseline-bi", "search", "distill-e3", "speedup".</param>
/// <param name="Event">What happened.</param>
/// <param name="Message">A line for a person to read.</param>
/// <param name="Done">Units of the stage done (passes, steps, windows, tensors), with <see cref="PruneEvent.Advanced"/>.</param>
/// <param name="Total">Units in all; 0 where the stage does not count them.</param>
public readonly record struct PruneProgress(string Stage, PruneEvent Event, string Message, long Done = 0, long Total = 0);

/// <summary>A stage of <see cref="Pruner.Run"/> failed; its cause is <see cref="Exception.InnerException"/>.</summary>
public sealed class PruneStageException : Exception
{
    internal PruneStageException(string stage, Exception inner)
        : base($"stage '{stage}' failed: {inner.Message} (fix the cause and resume the run, --resume, to continue from this stage)", inner) => Stage = stage;

    /// <summary>The stage that failed, e.g. "distill-e3".</summary>
    public string Stage { get; }
}

/// <summary>The result of <see cref="Pruner.Run"/>: what was learned and measured, and where it was written.</summary>
public sealed record PruneOutcome
{
    /// <summary>The learned mask (also in masks/e3.json).</summary>
    public required MaskFile Mask { get; init; }

    /// <summary>The healed, pruned model: a Hugging Face folder with the kept layers only, renumbered.</summary>
    public required string HealedModel { get; init; }

    /// <summary>report.md: the quality table, the speedup and the search plot.</summary>
    public required string ReportMarkdown { get; init; }

    /// <summary>report.json: the same figures, for programs.</summary>
    public required string ReportJson { get; init; }

    /// <summary>The full model's held-out perplexity.</summary>
    public required double TeacherPerplexity { get; init; }

    /// <summary>The held-out perplexity with E3's mask, before healing.</summary>
    public required double PrunedPerplexity { get; init; }

    /// <summary>The held-out perplexity of the healed, pruned model.</summary>
    public required double HealedPerplexity { get; init; }

    /// <summary>The fraction of the perplexity gap (pruned − full) that healing closed; null when pruning left no gap.</summary>
    public double? GapRecovered { get; init; }

    /// <summary>The baseline whose mask came closest to the teacher (lowest KL), or null when none ran.</summary>
    public string? BestBaseline { get; init; }

    /// <summary>Prefill throughput, pruned over full, measured side by side.</summary>
    public required double PrefillSpeedup { get; init; }

    /// <summary>Decode throughput, pruned over full; null when the bench generated no tokens.</summary>
    public double? DecodeSpeedup { get; init; }
}
