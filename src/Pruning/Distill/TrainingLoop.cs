using E3.Model.Training;
using E3.Optim;
using E3.Pruning.Data;
using E3.Pruning.Masks;

namespace E3.Pruning.Distill;

/// <summary>Where a run stands after an optimizer step (for progress display).</summary>
/// <param name="Step">Completed optimizer steps.</param>
/// <param name="TotalSteps">Steps the run takes.</param>
/// <param name="Loss">Mean loss of this step's micro-batches.</param>
/// <param name="LearningRate">The rate this step used.</param>
/// <param name="GradientNorm">Global L2 norm of the averaged gradient before clipping.</param>
/// <param name="TokensPerSecond">Tokens trained per second since this process started.</param>
public readonly record struct TrainingProgress(long Step, long TotalSteps, double Loss, double LearningRate, double GradientNorm, double TokensPerSecond);

/// <summary>What a finished run reports.</summary>
/// <param name="Steps">Optimizer steps the run has taken in all, a resumed run's earlier ones included.</param>
/// <param name="StartStep">The step this process started from (0, or the checkpoint's).</param>
/// <param name="Tokens">Tokens the whole run trains on (every step, Batch·Sequence·GradAccum each).</param>
/// <param name="FinalLoss">The last step's mean loss.</param>
/// <param name="LossHistory">Every step's loss, a resumed run's earlier ones included.</param>
/// <param name="Seconds">Wall time of this process's steps.</param>
public sealed record TrainingResult(long Steps, long StartStep, long Tokens, double FinalLoss, IReadOnlyList<LossPoint> LossHistory, double Seconds);

/// <summary>
/// The one training loop of <c>e3 train</c> and <c>e3 distill</c>: for each optimizer step, GradAccum micro-batches
/// (batch <c>step·GradAccum + i</c> of the <see cref="IBatchSource"/>, so the data position is the step) run through
/// the objective, gradients are averaged, clipped to a global L2 norm, and AdamW updates the fp32 parameters, which
/// are then published into the model. Every sum that decides a value is in a fixed order, so a run resumed from a
/// checkpoint on the CPU produces the same bits as one that was never stopped.
/// </summary>
internal sealed class TrainingLoop
{
    readonly GatedDecoderTrainer _trainer;
    readonly TrainableParameters _parameters;
    readonly AdamW _optimizer;
    readonly ITrainingObjective _objective;
    readonly IBatchSource _windows;
    readonly TrainingSettings _settings;
    readonly string[] _side;

    /// <param name="trainer">Train-mode trainer over the student, with the same freeze list as <paramref name="parameters"/>.</param>
    /// <param name="parameters">The trainable tensors, in optimizer order.</param>
    /// <param name="optimizer">AdamW over <paramref name="parameters"/>.</param>
    /// <param name="objective">The loss.</param>
    /// <param name="windows">The data, with the settings' sequence length and batch.</param>
    /// <param name="settings">Steps, schedule, accumulation and clipping.</param>
    public TrainingLoop(GatedDecoderTrainer trainer, TrainableParameters parameters, AdamW optimizer, ITrainingObjective objective,
        IBatchSource windows, TrainingSettings settings)
    {
        _trainer = trainer;
        _parameters = parameters;
        _optimizer = optimizer;
        _objective = objective;
        _windows = windows;
        _settings = settings;
        if (trainer.Options.Mode != TrainingMode.Train) throw new ArgumentException("the trainer must be in Train mode", nameof(trainer));
        _side = objective.SideGradientNames.Where(parameters.Names.Contains).ToArray();
        foreach (var name in parameters.Names)
            if (!trainer.WeightGradients.ContainsKey(name) && !_side.Contains(name))
                throw new ArgumentException($"the trainer has no gradient for trainable tensor '{name}'", nameof(trainer));
        if (windows.SequenceLength != settings.Sequence || windows.Batch != settings.Batch)
            throw new ArgumentException($"the batches are [{windows.Batch}, {windows.SequenceLength}]; the settings say --batch {settings.Batch} --seq {settings.Sequence}", nameof(windows));
    }

    /// <summary>
    /// Runs optimizer steps <paramref name="startStep"/>..TotalSteps−1. <paramref name="checkpoint"/> (when given) is
    /// called after every CheckpointEvery-th step and after the last one, with the completed step count; and when
    /// <paramref name="cancel"/> stops the run between steps, for the steps done since the last save, so that a resumed
    /// run loses none of them.
    /// </summary>
    public TrainingResult Run(long startStep, List<LossPoint> history, Action<long>? checkpoint, Action<TrainingProgress>? progress,
        CancellationToken cancel = default)
    {
        long total = _settings.TotalSteps;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        int perBatch = _windows.SequenceLength * _windows.Batch;
        var inputs = new int[perBatch];
        var targets = new int[perBatch];
        var gradients = _parameters.Gradients;
        var side = _side.ToDictionary(n => n, n => new float[_parameters.Values[IndexOf(n)].Length]);
        double lastLoss = double.NaN;
        long saved = startStep;
        for (long step = startStep; step < total; step++)
        {
            if (cancel.IsCancellationRequested)
            {
                if (checkpoint != null && step > saved) checkpoint(step);
                cancel.ThrowIfCancellationRequested();
            }
            _trainer.ZeroWeightGradients();
            foreach (var g in side.Values) Array.Clear(g);
            double loss = 0;
            for (int micro = 0; micro < _settings.GradAccum; micro++)
            {
                long batchIndex = step * _settings.GradAccum + micro;
                _windows.Fill(batchIndex, inputs, targets);
                loss += _objective.ForwardBackward(_trainer, batchIndex, inputs, targets, _settings.Batch, side);
            }
            loss /= _settings.GradAccum;
            if (!double.IsFinite(loss)) throw new ArithmeticException($"step {step}: the loss is {loss}; lower --lr or check the data");
            double norm = GatherGradients(gradients, side);
            double lr = _settings.LearningRateAt(step);
            _optimizer.Step(_parameters.Values.Select(v => (Memory<float>)v).ToArray(), gradients.Select(g => (ReadOnlyMemory<float>)g).ToArray(), lr);
            _parameters.Publish();
            history.Add(new LossPoint(step + 1, loss));
            lastLoss = loss;
            long done = step + 1;
            progress?.Invoke(new TrainingProgress(done, total, loss, lr, norm,
                (done - startStep) * _settings.TokensPerStep / Math.Max(1e-9, clock.Elapsed.TotalSeconds)));
            if (checkpoint != null && (done == total || (_settings.CheckpointEvery > 0 && done % _settings.CheckpointEvery == 0)))
            {
                checkpoint(done);
                saved = done;
            }
        }
        return new TrainingResult(total, startStep, total * _settings.TokensPerStep, lastLoss, history, clock.Elapsed.TotalSeconds);
    }

    int IndexOf(string name)
    {
        for (int i = 0; i < _parameters.Names.Count; i++)
            if (_parameters.Names[i] == name) return i;
        throw new ArgumentException($"'{name}' is not a trainable tensor");
    }

    /// <summary>
    /// Averages the accumulated gradients over the micro-batches into <paramref name="gradients"/>, clips them to the
    /// global norm and returns the norm before clipping (summed in double, in parameter order).
    /// </summary>
    double GatherGradients(IReadOnlyList<float[]> gradients, Dictionary<string, float[]> side)
    {
        float scale = 1f / _settings.GradAccum;
        double sumSquares = 0;
        for (int i = 0; i < gradients.Count; i++)
        {
            string name = _parameters.Names[i];
            var g = gradients[i];
            if (_trainer.WeightGradients.TryGetValue(name, out var tensor)) _parameters.Backend.Download(tensor, g);
            else Array.Clear(g);
            if (side.TryGetValue(name, out var head))
                for (int j = 0; j < g.Length; j++) g[j] += head[j];
            for (int j = 0; j < g.Length; j++)
            {
                g[j] *= scale;
                sumSquares += (double)g[j] * g[j];
            }
        }
        double norm = Math.Sqrt(sumSquares);
        if (!double.IsFinite(norm)) throw new ArithmeticException($"the gradient norm is {norm}; lower --lr or check the data");
        if (_settings.Clip > 0 && norm > _settings.Clip)
        {
            float factor = (float)(_settings.Clip / (norm + 1e-6));
            foreach (var g in gradients)
                for (int j = 0; j < g.Length; j++) g[j] *= factor;
        }
        return norm;
    }
}
