namespace E3.Model.Decoder;

/// <summary>
/// Sees the residual stream of a forward pass between layers, for methods that score layers by how much they change
/// it (ShortGPT's block influence, Gromov et al.'s angular distance). Passed to
/// <see cref="InferenceSession.Forward(ReadOnlySpan{int}, LogitsMode, IHiddenStateObserver?)"/>; a forward without an
/// observer does no extra work.
/// </summary>
internal interface IHiddenStateObserver
{
    /// <summary>
    /// Called for <paramref name="index"/> = 0, 1, …, L in order: the input of layer <paramref name="index"/>, and for
    /// index L the last layer's output (before the final norm). A skipped layer (gate 0) passes its input through, so
    /// its input and output are the same values.
    /// </summary>
    /// <param name="index">Which boundary: 0 is the embedding output, L the output of the last layer.</param>
    /// <param name="hidden">[B·T, hidden] in float32, rows laid out [B, T]; only valid during the call.</param>
    void Observe(int index, ReadOnlySpan<float> hidden);
}
