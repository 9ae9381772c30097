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
    /// <summary>Mean negative log-likelihood and perplexity of <paramref name="tokens"/> under <paramref name="mask"/> (all layers when null).</summary>
    /// <param name="window">Tokens per window, at least 2; a window scores its length − 1 positions.</param>
    /// <param name="maxTokens">No further window is read once this many positions are scored (the last window read may overshoot).</param>
    public static PerplexityResult Evaluate(DecoderModel model, ReadOnlySpan<int> tokens, LayerMask? mask = null, int window = 256, long maxTokens = long.MaxValue)
    {
        if (window < 2) throw new ArgumentOutOfRangeException(nameof(window), $"window {window} must be at least 2");
        if (tokens.Length < 2) throw new ArgumentException($"perplexity needs at least 2 tokens, got {tokens.Length}", nameof(tokens));
        model.ValidateTokens(tokens);
        int vocab = model.Config.VocabSize;
        double nll = 0;
        long scored = 0;
        var windows = Windows(tokens.Length, window, maxTokens);
        foreach (var (start, length) in windows)
        {
            var w = tokens.Slice(start, length);
            float[] logits = model.Forward(w, mask);
            for (int t = 0; t + 1 < w.Length; t++)
            {
                nll -= LogSoftmaxAt(logits.AsSpan(t * vocab, vocab), w[t + 1]);
                scored++;
            }
        }
        double mean = nll / scored;
        return new PerplexityResult(mean, Math.Exp(mean), scored, windows.Count);
    }

    /// <summary>
    /// The windows an evaluation reads: consecutive, non-overlapping, <paramref name="window"/> tokens each (the last
    /// may be shorter but holds at least 2), stopping once <paramref name="maxTokens"/> positions are scored (a window
    /// scores its length − 1). Every evaluation over the same stream and settings reads the same windows.
    /// </summary>
    internal static IReadOnlyList<(int Start, int Length)> Windows(int tokenCount, int window, long maxTokens)
    {
        var windows = new List<(int, int)>();
        long scored = 0;
        for (int start = 0; start + 1 < tokenCount && scored < maxTokens; start += window)
        {
            int length = Math.Min(window, tokenCount - start);
            if (length < 2) break;
            windows.Add((start, length));
            scored += length - 1;
        }
        return windows;
    }

    /// <summary>log softmax(z)[target], in double for a stable sum.</summary>
    internal static double LogSoftmaxAt(ReadOnlySpan<float> z, int target)
    {
        float max = float.NegativeInfinity;
        foreach (float v in z) max = MathF.Max(max, v);
        double sum = 0;
        foreach (float v in z) sum += Math.Exp(v - max);
        return z[target] - max - Math.Log(sum);
    }
}
