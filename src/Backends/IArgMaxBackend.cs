namespace E3.Backends;

/// <summary>
/// A backend that reduces logits rows to their argmax where the logits live, so that greedy decoding downloads one
/// int per row instead of the whole vocabulary row. Backends without it have their logits downloaded and reduced on the host.
/// </summary>
internal interface IArgMaxBackend
{
    /// <summary>ids[r] = the first index of the largest value of row r of <paramref name="logits"/> ([rows, vocab]).</summary>
    void ArgMaxRows(Tensor logits, Span<int> ids);
}

/// <summary>
/// A backend that draws each logits row's next token where the logits live (kernels/sampling.cu), so that sampled
/// decoding downloads one int per row. Backends without it have their logits downloaded and drawn from on the host by
/// <see cref="Numerics.TokenSampler"/>, the same rule.
/// </summary>
internal interface ISamplingBackend
{
    /// <summary>ids[r] = the token drawn from row r of <paramref name="logits"/> ([rows, vocab]) as <paramref name="settings"/> says, with row r's noise.</summary>
    void SampleRows(Tensor logits, in E3.Interop.Kernels.SamplingSettings settings, Span<int> ids);
}

/// <summary>
/// A backend that selects each logits row's top-K tokens and their log-probabilities where the logits live (the teacher
/// cache's entries), so that K pairs per row come back instead of the vocabulary row.
/// </summary>
internal interface ITopKBackend
{
    /// <summary>The largest K <see cref="TopKLogProbs"/> accepts.</summary>
    int MaxTopK { get; }

    /// <summary>
    /// For each row r of <paramref name="logits"/> ([rows, vocab]): the K = indices.Length / rows largest logits in
    /// descending order, ties to the lower index, into indices[r·K ..], and min(0, z − logsumexp(row)) into
    /// logProbs[r·K ..]. A row holding NaN or an infinity is an <see cref="ArgumentException"/> naming it.
    /// </summary>
    void TopKLogProbs(Tensor logits, Span<int> indices, Span<float> logProbs);
}
