using E3.Pruning.Data;

namespace E3.Pruning.Baselines;

/// <summary>The token batches a baseline scores layers on: each batch is B sequences of T tokens, laid out [B, T].</summary>
public sealed class CalibrationSet
{
    /// <param name="sequenceLength">T.</param>
    /// <param name="batch">B.</param>
    /// <param name="batches">Each of length B·T.</param>
    public CalibrationSet(int sequenceLength, int batch, IReadOnlyList<int[]> batches)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(sequenceLength, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        if (batches.Count == 0) throw new ArgumentException("a calibration set needs at least one batch", nameof(batches));
        for (int i = 0; i < batches.Count; i++)
            if (batches[i].Length != sequenceLength * batch)
                throw new ArgumentException($"batch {i} holds {batches[i].Length} tokens; B·T is {sequenceLength * batch}", nameof(batches));
        SequenceLength = sequenceLength;
        Batch = batch;
        Batches = batches;
    }

    /// <summary>T: tokens per sequence.</summary>
    public int SequenceLength { get; }
    /// <summary>B: sequences per batch.</summary>
    public int Batch { get; }
    /// <summary>The batches, each B·T token ids laid out [B, T].</summary>
    public IReadOnlyList<int[]> Batches { get; }

    /// <summary>Tokens over all batches (what mask.json records as <c>tokens</c>).</summary>
    public long Tokens => (long)Batches.Count * Batch * SequenceLength;

    /// <summary>
    /// ⌈<paramref name="tokens"/> / (B·T)⌉ batches of windows from <paramref name="stream"/>, drawn as the mask search
    /// draws its batches (<see cref="TokenWindows"/>, steps 0, 1, …), so one seed gives the same data everywhere.
    /// </summary>
    public static CalibrationSet Sample(int[] stream, int sequenceLength, int batch, long tokens, ulong seed, string source)
    {
        if (tokens < 1) throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"--tokens: {tokens} must be positive");
        var windows = new TokenWindows(stream, sequenceLength, batch, seed, source);
        long count = (tokens + windows.TokensPerBatch - 1) / windows.TokensPerBatch;
        if (count > Array.MaxLength / windows.TokensPerBatch)
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"--tokens: {tokens} is more calibration tokens than one process can hold");
        var batches = new int[count][];
        for (int step = 0; step < count; step++)
        {
            batches[step] = new int[windows.TokensPerBatch];
            windows.Fill(step, batches[step], []);
        }
        return new CalibrationSet(sequenceLength, batch, batches);
    }
}
