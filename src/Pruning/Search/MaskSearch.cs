using E3.Model.Decoder;
using E3.Model.Training;
using E3.Optim;
using E3.Pruning.Distillation;
using E3.Pruning.Masking;
using E3.Pruning.Masks;

namespace E3.Pruning.Search;

/// <summary>What one search step computed.</summary>
/// <param name="Step">The step number.</param>
/// <param name="Keep">k at this step (the curriculum).</param>
/// <param name="Tau">τ at this step (the schedule).</param>
/// <param name="Loss">Distillation loss averaged over the samples.</param>
/// <param name="HardMasks">The sampled hard masks, [Samples × Layers].</param>
/// <param name="SoftMasks">Their relaxed masks, [Samples × Layers].</param>
/// <param name="GateGradients">dL/dm for each sample, already divided by the sample count, [Samples × Layers].</param>
/// <param name="AlphaGradient">dL/dα: the straight-through gradient, averaged over samples.</param>
internal sealed record SearchGradient(long Step, int Keep, float Tau, double Loss, float[] HardMasks, float[] SoftMasks,
    float[] GateGradients, float[] AlphaGradient);

/// <summary>Progress after a step.</summary>
public readonly record struct SearchProgress(long Step, long TotalSteps, int Keep, float Tau, double Loss, IReadOnlyList<float> Alpha);

/// <summary>
/// The learned layer-mask search (E3-Pruner, arXiv 2511.17205): mask logits α over the decoder layers are trained so
/// that the model with Gumbel-TopK hard masks matches the full model under the entropy-weighted distillation loss.
/// <para>
/// Step s: the batch and teacher from <see cref="SearchBatches"/>; k_s from the <see cref="KeepCurriculum"/>, τ_s from
/// the <see cref="TemperatureSchedule"/>; S hard masks drawn by <see cref="CpuGumbelTopK"/> (noise keyed by seed, s,
/// sample); for each, the frozen gated forward (dropped layers still computed so their gate gradient exists), the KD
/// loss and its backward give dL/dm; the relaxed top-k's vector-Jacobian product maps dL/dm (hard forward, soft
/// backward: the straight-through estimator) to dL/dα, averaged over samples; one AdamW step on α.
/// The result is the noise-free top-k of α (<see cref="DeterministicMask"/>).
/// </para>
/// One loaded model is both teacher (every gate 1) and student: the weights never change.
/// </summary>
public sealed class MaskSearch : IDisposable
{
    private readonly DecoderModel model;
    private readonly SearchBatches batches;
    private readonly SearchOptions options;
    private readonly GatedDecoderTrainer trainer;
    private readonly GatedKdPass pass;
    private readonly CpuGumbelTopK sampler;
    private readonly AdamW optimizer;
    private readonly KeepCurriculum curriculum;
    private readonly TemperatureSchedule temperature;
    private readonly int[] inputs;
    private readonly int layers;

    /// <param name="model">The model; its backend must support the backward pass.</param>
    /// <param name="batches">Data and teacher per step.</param>
    /// <param name="options">The search settings (validated here against the model).</param>
    /// <param name="threads">Threads for the Gumbel sampler (-1: the runtime's choice); results do not depend on it.</param>
    public MaskSearch(DecoderModel model, SearchBatches batches, SearchOptions options, int threads = -1)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batches);
        ArgumentNullException.ThrowIfNull(options);
        layers = model.Config.NumLayers;
        options.Validate(layers);
        this.model = model;
        this.batches = batches;
        this.options = options;
        curriculum = new KeepCurriculum(layers, options.ResolvedWarmupKeep(layers), options.Keep, options.ResolvedCurriculumSteps);
        // Steps run 0..Steps-1: the schedule reaches --tau-min at the last one, which is the step that decides the mask.
        temperature = new TemperatureSchedule(options.Tau0, options.TauMin, Math.Max(1, options.Steps - 1), options.TauSchedule);
        inputs = new int[batches.TokensPerBatch];
        Fingerprint = options.Fingerprint(model.Config.Hash(), batches.DataIdentity, batches.TeacherIdentity, batches.SequenceLength, batches.Batch);
        trainer = new GatedDecoderTrainer(model, new TrainingOptions { Mode = TrainingMode.Frozen, ComputeDroppedLayers = true, Checkpointing = options.ActivationCheckpointing });
        pass = new GatedKdPass(model, trainer);
        sampler = new CpuGumbelTopK(threads);
        // No weight decay: it would pull every logit toward 0, a prior toward the uniform mask nobody asked for.
        optimizer = new AdamW([new ParameterSlot("alpha", layers)], new AdamWOptions());
    }

    /// <summary>Identifies the trajectory (options, model, data, teacher): what a checkpoint must match.</summary>
    internal string Fingerprint { get; }

    /// <summary>The search settings.</summary>
    public SearchOptions Options => options;

    /// <summary>The optimizer on α (its state is part of a checkpoint).</summary>
    internal AdamW Optimizer => optimizer;

    /// <summary>
    /// The starting state: α from drop-one KL importance over the first <see cref="SearchOptions.InitBatches"/>
    /// batches (<see cref="LayerImportance"/>), or zeros for <see cref="AlphaInit.Uniform"/>. The importance always
    /// compares against the live full model, even when the search's teacher is a cache.
    /// </summary>
    public SearchState Initialize()
    {
        if (options.Init == AlphaInit.Uniform) return new SearchState(new float[layers]);
        var importance = LayerImportance.DropOneKl(model, trainer, Calibration(), batches.Batch);
        return new SearchState(LayerImportance.ToLogits(importance), importance);
    }

    /// <summary>The first <see cref="SearchOptions.InitBatches"/> batches of the data order.</summary>
    List<int[]> Calibration()
    {
        var calibration = new List<int[]>();
        for (int i = 0; i < options.InitBatches; i++)
        {
            var batch = new int[batches.TokensPerBatch];
            batches.Fill(i, batch);
            calibration.Add(batch);
        }
        return calibration;
    }

    /// <summary>
    /// The kept layers: α's top-k, or, with <see cref="SearchOptions.RefineSwaps"/> r &gt; 0, the lowest-KL candidate
    /// among it and its r×r boundary swaps (ties keep α's top-k, which is listed first).
    /// </summary>
    internal int[] FinalKept(ReadOnlySpan<float> alpha)
    {
        var mask = new float[layers];
        DeterministicMask.TopK(alpha, options.Keep, mask);
        if (options.RefineSwaps == 0) return Enumerable.Range(0, layers).Where(l => mask[l] == 1f).ToArray();
        var a = alpha.ToArray();
        var kept = Enumerable.Range(0, layers).Where(l => mask[l] == 1f).OrderBy(l => a[l]).ThenByDescending(l => l).Take(options.RefineSwaps).ToArray();
        var dropped = Enumerable.Range(0, layers).Where(l => mask[l] == 0f).OrderByDescending(l => a[l]).ThenBy(l => l).Take(options.RefineSwaps).ToArray();
        var candidates = new List<float[]> { mask };
        foreach (int k in kept)
            foreach (int d in dropped)
            {
                var swapped = (float[])mask.Clone();
                swapped[k] = 0f;
                swapped[d] = 1f;
                candidates.Add(swapped);
            }
        var kl = LayerImportance.MaskKl(model, trainer, Calibration(), batches.Batch, candidates);
        int best = 0;
        for (int i = 1; i < kl.Length; i++) if (kl[i] < kl[best]) best = i;
        return Enumerable.Range(0, layers).Where(l => candidates[best][l] == 1f).ToArray();
    }

    /// <summary>
    /// The loss and straight-through gradient dL/dα at step <paramref name="step"/> for logits
    /// <paramref name="alpha"/>, without changing anything.
    /// </summary>
    internal SearchGradient Gradient(ReadOnlySpan<float> alpha, long step)
    {
        if (alpha.Length != layers) throw new ArgumentException($"α has {alpha.Length} values; the model has {layers} layers", nameof(alpha));
        int keep = curriculum.At(step);
        float tau = temperature.At(step);
        var spec = new GumbelTopKSpec(layers, keep, options.Samples, tau, options.Seed, step, options.Relaxation);
        var hard = new float[spec.MaskElements];
        var soft = new float[spec.MaskElements];
        var gateGrads = new float[spec.MaskElements];
        var alphaGrad = new float[layers];
        sampler.SampleHard(alpha, spec, hard);

        batches.Fill(step, inputs);
        var teacher = batches.Teacher(step, () => pass.Teacher(inputs, batches.Batch), model.Config.VocabSize);
        double lossSum = 0;
        try
        {
            for (int s = 0; s < options.Samples; s++)
            {
                lossSum += pass.Loss(inputs, batches.Batch, hard.AsSpan(s * layers, layers), teacher, options.Kd).Loss;
                var gates = pass.Backward().Gates;
                for (int l = 0; l < layers; l++) gateGrads[s * layers + l] = (float)(gates[l] / options.Samples);
            }
        }
        finally
        {
            (teacher as IDisposable)?.Dispose();
        }
        sampler.ForwardBackward(alpha, spec, gateGrads, hard, soft, alphaGrad);
        return new SearchGradient(step, keep, tau, lossSum / options.Samples, hard, soft, gateGrads, alphaGrad);
    }

    /// <summary>Runs step <see cref="SearchState.Step"/> and applies the AdamW update to α.</summary>
    internal SearchGradient Step(SearchState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Step >= options.Steps) throw new InvalidOperationException($"the search already ran its {options.Steps} steps");
        var g = Gradient(state.Alpha, state.Step);
        optimizer.Step([state.Alpha.AsMemory()], [g.AlphaGradient.AsMemory()], options.LearningRate);
        state.RecordLoss(new LossPoint(g.Step, g.Loss));
        state.RecordKeepProbability(KeepProbability(state.Alpha, g.Keep, g.Step));
        state.Step++;
        return g;
    }

    /// <summary>Hard Gumbel-TopK draws per step behind <see cref="SearchState.KeepProbability"/>.</summary>
    internal const int KeepProbabilityDraws = 1024;

    /// <summary>
    /// P(layer kept) under logits <paramref name="alpha"/> at keep count <paramref name="keep"/>: the fraction of
    /// <see cref="KeepProbabilityDraws"/> hard Gumbel-TopK masks (a noise stream of their own, so the search's draws
    /// are untouched) that keep each layer. Unlike the soft top-k mask, whose entries can exceed 1, this is a
    /// probability, with standard error at most 0.5/√1024 ≈ 0.016.
    /// </summary>
    float[] KeepProbability(ReadOnlySpan<float> alpha, int keep, long step)
    {
        var spec = new GumbelTopKSpec(layers, keep, KeepProbabilityDraws, 1f, options.Seed ^ 0x6B656570_70726F62UL, step, options.Relaxation);
        var hard = new float[spec.MaskElements];
        sampler.SampleHard(alpha, spec, hard);
        var probability = new float[layers];
        for (int d = 0; d < KeepProbabilityDraws; d++)
            for (int l = 0; l < layers; l++) probability[l] += hard[d * layers + l];
        for (int l = 0; l < layers; l++) probability[l] /= KeepProbabilityDraws;
        return probability;
    }

    /// <summary>
    /// Runs the remaining steps, saving a checkpoint into <paramref name="checkpointDirectory"/> (when not null) every
    /// <paramref name="checkpointEvery"/> steps and after the last; reports each step to <paramref name="progress"/>.
    /// </summary>
    /// <param name="cancel">Stops the run between steps, after saving a checkpoint of the steps done since the last
    /// one, so that <see cref="Resume"/> loses none of them; then throws <see cref="OperationCanceledException"/>.</param>
    public void Run(SearchState state, string? checkpointDirectory, int checkpointEvery, Action<SearchProgress>? progress = null,
        CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (checkpointDirectory != null && checkpointEvery < 1) throw new ArgumentException($"--checkpoint-every: {checkpointEvery} must be at least 1");
        long saved = state.Step;
        while (state.Step < options.Steps)
        {
            if (cancel.IsCancellationRequested)
            {
                if (checkpointDirectory != null && state.Step > saved) SearchCheckpoint.Save(checkpointDirectory, Fingerprint, state, optimizer);
                cancel.ThrowIfCancellationRequested();
            }
            var g = Step(state);
            if (checkpointDirectory != null && (state.Step % checkpointEvery == 0 || state.Step == options.Steps))
            {
                SearchCheckpoint.Save(checkpointDirectory, Fingerprint, state, optimizer);
                saved = state.Step;
            }
            progress?.Invoke(new SearchProgress(g.Step, options.Steps, g.Keep, g.Tau, g.Loss, state.Alpha));
        }
    }

    /// <summary>Restores a checkpoint of this search (same fingerprint) into a state and the optimizer.</summary>
    public SearchState Resume(string checkpointDirectory) => SearchCheckpoint.Load(checkpointDirectory, Fingerprint, layers, optimizer);

    /// <summary>The final mask (<see cref="FinalKept"/>), with the search's α, τ, steps, tokens, seed and loss history.</summary>
    public MaskFile Result(SearchState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var kept = FinalKept(state.Alpha);
        return MaskFile.For(model.Config, "e3", kept) with
        {
            Alpha = state.Alpha.Select(a => (double)a).ToArray(),
            Tau = temperature.At(Math.Max(0, state.Step - 1)),
            Steps = state.Step,
            Tokens = state.Step * batches.TokensPerBatch,
            Seed = options.Seed,
            LossHistory = state.LossHistory.ToArray(),
        };
    }

    /// <summary>Frees the trainer's backend buffers and the optimizer's state; the model stays the caller's.</summary>
    public void Dispose()
    {
        trainer.Dispose();
        optimizer.Dispose();
    }
}
