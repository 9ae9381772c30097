namespace E3.Backends;

/// <summary>
/// A backend that reduces logits rows to their argmax where the logits live, so that greedy decoding downloads one
/// int per row instead of the whole vocabulary row. Backends without it have their logits downloaded and reduced on the host.
/// </summary>
public interface IArgMaxBackend
{
    /// <summary>ids[r] = the first index of the largest value of row r of <paramref name="logits"/> ([rows, vocab]).</summary>
    void ArgMaxRows(Tensor logits, Span<int> ids);
}
