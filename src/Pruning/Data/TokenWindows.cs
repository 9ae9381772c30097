using E3.Backends.Numerics;
using E3.Pruning.Masking;

namespace E3.Pruning.Data;

/// <summary>
/// Training batches drawn from one token stream: batch <c>step</c> is [B, T] windows whose start offsets come from a
/// counter-based generator keyed by (seed, step, row). A batch depends only on its step number, so a resumed run needs
/// no data-loader state beyond the step it stopped at, and the same seed always sees the same data.
/// </summary>
internal sealed class TokenWindows
{
    readonly int[] _tokens;

    /// <param name="tokens">The whole token stream (at least <paramref name="sequenceLength"/> + 1 tokens).</param>
    /// <param name="sequenceLength">T, tokens per window.</param>
    /// <param name="batch">B, windows per batch.</param>
    /// <param name="seed">Selects the window offsets.</param>
    /// <param name="source">Named in errors (the data file).</param>
    public TokenWindows(int[] tokens, int sequenceLength, int batch, ulong seed, string source = "<data>")
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (sequenceLength < 2) throw new ArgumentOutOfRangeException(nameof(sequenceLength), sequenceLength, "sequence length must be at least 2");
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "batch must be at least 1");
        if (tokens.Length < sequenceLength + 1)
            throw new InvalidDataException($"{source}: holds {tokens.Length} tokens; a window of {sequenceLength} needs at least {sequenceLength + 1}");
        _tokens = tokens;
        SequenceLength = sequenceLength;
        Batch = batch;
        Seed = seed;
    }

    public int SequenceLength { get; }
    public int Batch { get; }
    public ulong Seed { get; }

    /// <summary>Tokens in one batch (B·T).</summary>
    public int TokensPerBatch => SequenceLength * Batch;

    /// <summary>
    /// Batch <paramref name="step"/>: B·T input ids and, when <paramref name="targets"/> is not empty, the next-token
    /// targets (the window shifted by one).
    /// </summary>
    public void Fill(long step, Span<int> inputs, Span<int> targets)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "step must be ≥ 0");
        if (inputs.Length != TokensPerBatch) throw new ArgumentException($"inputs holds {inputs.Length}; a batch is {TokensPerBatch}", nameof(inputs));
        if (!targets.IsEmpty && targets.Length != TokensPerBatch) throw new ArgumentException($"targets holds {targets.Length}; a batch is {TokensPerBatch}", nameof(targets));
        long span = _tokens.Length - SequenceLength; // starts 0..span-1 leave room for the shifted target
        for (int b = 0; b < Batch; b++)
        {
            var r = Philox4x32.Generate((uint)step, (uint)(step >> 32), (uint)b, 0x57494E44u, (uint)Seed, (uint)(Seed >> 32));
            ulong draw = ((ulong)r.X1 << 32) | r.X0;
            int start = (int)(draw % (ulong)span);
            _tokens.AsSpan(start, SequenceLength).CopyTo(inputs.Slice(b * SequenceLength, SequenceLength));
            if (!targets.IsEmpty) _tokens.AsSpan(start + 1, SequenceLength).CopyTo(targets.Slice(b * SequenceLength, SequenceLength));
        }
    }
}
