using E3.Model.Decoder;

namespace E3.Model.Evaluation;

/// <summary>Result of a perplexity run over a token stream.</summary>
public sealed record PerplexityResult(double MeanNll, double Perplexity, long TokensScored, int Windows);

/// <summary>
/// Perplexity over non-overlapping windows of a token stream: every window predicts its tokens 1..T-1 from
/// the ones before, so each scored token has at most T-1 tokens of context.
/// </summary>
public static class Perplexity
{
    public static PerplexityResult Evaluate(DecoderModel model, ReadOnlySpan<int> tokens, LayerMask? mask = null, int window = 256, long maxTokens = long.MaxValue)
    {
        if (window < 2) throw new ArgumentOutOfRangeException(nameof(window), $"window {window} must be at least 2");
        if (tokens.Length < 2) throw new ArgumentException($"perplexity needs at least 2 tokens, got {tokens.Length}", nameof(tokens));
        model.ValidateTokens(tokens);
        int vocab = model.Config.VocabSize;
        double nll = 0;
        long scored = 0;
        int windows = 0;
        for (int start = 0; start + 1 < tokens.Length && scored < maxTokens; start += window)
        {
            var w = tokens.Slice(start, Math.Min(window, tokens.Length - start));
            if (w.Length < 2) break;
            float[] logits = model.Forward(w, mask);
            for (int t = 0; t + 1 < w.Length; t++)
            {
                nll -= LogSoftmaxAt(logits.AsSpan(t * vocab, vocab), w[t + 1]);
                scored++;
            }
            windows++;
        }
        double mean = nll / scored;
        return new PerplexityResult(mean, Math.Exp(mean), scored, windows);
    }

    /// <summary>log softmax(z)[target], in double for a stable sum.</summary>
    public static double LogSoftmaxAt(ReadOnlySpan<float> z, int target)
    {
        float max = float.NegativeInfinity;
        foreach (float v in z) max = MathF.Max(max, v);
        double sum = 0;
        foreach (float v in z) sum += Math.Exp(v - max);
        return z[target] - max - Math.Log(sum);
    }
}
