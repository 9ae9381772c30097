using E3.Model.Training;

namespace E3.Pruning.Distill;

/// <summary>
/// Mean next-token cross-entropy over every position, −(1/N)·Σ_t log softmax(z_t)[y_t], with its gradient
/// (softmax(z_t) − onehot(y_t))/N written over the logits. Log-sum-exp in double so the loss of a nearly certain
/// prediction does not round to 0.
/// </summary>
internal sealed class CrossEntropyObjective(IReadOnlyList<float> gates) : ITrainingObjective
{
    readonly float[] _gates = gates.ToArray();

    /// <inheritdoc/>
    public IReadOnlyCollection<string> SideGradientNames => [];

    /// <inheritdoc/>
    public double ForwardBackward(GatedDecoderTrainer trainer, long batchIndex, ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, int batch,
        IReadOnlyDictionary<string, float[]> extraGradients)
    {
        float[] logits = trainer.Forward(inputs, batch, _gates);
        double loss = LossAndGradient(logits, targets);
        trainer.Backward(logits);
        return loss;
    }

    /// <summary>Mean cross-entropy of <paramref name="logits"/> [N, V]; the logits are replaced by dLoss/dlogits.</summary>
    public static double LossAndGradient(Span<float> logits, ReadOnlySpan<int> targets)
    {
        int rows = targets.Length;
        if (rows == 0 || logits.Length % rows != 0) throw new ArgumentException($"{logits.Length} logits do not form {rows} rows");
        int vocab = logits.Length / rows;
        double total = 0;
        float scale = 1f / rows;
        for (int t = 0; t < rows; t++)
        {
            var row = logits.Slice(t * vocab, vocab);
            int y = targets[t];
            if ((uint)y >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(targets), $"targets[{t}] = {y} is outside the vocabulary [0, {vocab})");
            float max = float.NegativeInfinity;
            foreach (float z in row) max = MathF.Max(max, z);
            if (!float.IsFinite(max)) throw new ArithmeticException($"logits of row {t} are not finite (max {max})");
            double sum = 0;
            foreach (float z in row) sum += Math.Exp(z - max);
            double logSum = Math.Log(sum);
            total += logSum - (row[y] - max);
            for (int j = 0; j < vocab; j++) row[j] = (float)(Math.Exp(row[j] - max - logSum) * scale);
            row[y] -= scale;
        }
        return total / rows;
    }
}
