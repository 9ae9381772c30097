using E3.Pruning.Data;

namespace E3.Pruning.Distill;

/// <summary>Training batches keyed by a batch index alone, so a resumed run needs only its step to find its data.</summary>
internal interface IBatchSource
{
    /// <summary>T: tokens per sequence.</summary>
    int SequenceLength { get; }

    /// <summary>B: sequences per batch.</summary>
    int Batch { get; }

    /// <summary>Batch <paramref name="index"/>: B·T inputs and their next-token targets (an ignore index where there is none).</summary>
    void Fill(long index, Span<int> inputs, Span<int> targets);
}

/// <summary>Random windows of a token stream (<see cref="TokenWindows"/>) as a batch source.</summary>
internal sealed class WindowBatches(TokenWindows windows) : IBatchSource
{
    /// <inheritdoc/>
    public int SequenceLength => windows.SequenceLength;

    /// <inheritdoc/>
    public int Batch => windows.Batch;

    /// <inheritdoc/>
    public void Fill(long index, Span<int> inputs, Span<int> targets) => windows.Fill(index, inputs, targets);
}
