using E3.Backends;
using E3.Model;
using E3.Model.Decoder;

namespace E3.Pruning.TeacherCache;

/// <summary>
/// The teacher cache's entries for one sequence: the teacher (every layer) runs on its tokens, and each position keeps
/// its K most likely tokens and their log-probabilities. A backend with <see cref="ITopKBackend"/> selects them where
/// the logits are, so K pairs per token come back instead of the vocabulary row; any other backend's logits are
/// downloaded and selected by <see cref="TopKSelector"/>, with the same order and tie rule.
/// </summary>
internal static class TeacherTopK
{
    /// <summary>Fills <paramref name="indices"/> and <paramref name="logProbs"/> ([tokens, K] each) for <paramref name="ids"/>.</summary>
    public static void Compute(DecoderModel teacher, ReadOnlySpan<int> ids, Span<int> indices, Span<float> logProbs)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        int n = ids.Length;
        if (n == 0 || indices.Length % n != 0 || indices.Length == 0 || logProbs.Length != indices.Length)
            throw new ArgumentException($"{indices.Length} indices and {logProbs.Length} log-probabilities for {n} tokens");
        int k = indices.Length / n, vocab = teacher.Config.VocabSize;
        using var session = teacher.StartSession(LayerMask.All(teacher.Config.NumLayers), 1, n);
        var logits = session.ForwardLogits(ids);
        if (teacher.Backend is ITopKBackend device && k <= device.MaxTopK)
        {
            device.TopKLogProbs(logits, indices, logProbs);
            return;
        }
        var values = new float[logits.ElementCount];
        teacher.Backend.Download(logits, values);
        for (int t = 0; t < n; t++)
            TopKSelector.Select(values.AsSpan(t * vocab, vocab), indices.Slice(t * k, k), logProbs.Slice(t * k, k));
    }
}
