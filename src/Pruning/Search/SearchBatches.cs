using E3.Backends.Numerics;
using E3.Pruning.Data;
using E3.Pruning.Distillation;
using E3.Pruning.Masking;
using E3.Pruning.TeacherCache;

namespace E3.Pruning.Search;

/// <summary>
/// Where each search step's tokens and teacher come from. Batch <c>step</c> is a function of the step number only,
/// so a resumed search needs no data-loader state.
/// </summary>
public abstract class SearchBatches
{
    // Only the engine's batch sources derive from it: the teacher hook they implement is internal.
    private protected SearchBatches() { }

    /// <summary>T: tokens per sequence.</summary>
    public abstract int SequenceLength { get; }

    /// <summary>B: sequences per batch.</summary>
    public abstract int Batch { get; }

    /// <summary>B·T.</summary>
    public int TokensPerBatch => SequenceLength * Batch;

    /// <summary>Identifies the token stream (length and checksum) in a checkpoint fingerprint.</summary>
    public abstract string DataIdentity { get; }

    /// <summary>Identifies the teacher ("live" or the cache) in a checkpoint fingerprint.</summary>
    public abstract string TeacherIdentity { get; }

    /// <summary>Writes batch <paramref name="step"/>'s B·T input ids.</summary>
    public abstract void Fill(long step, Span<int> inputs);

    /// <summary>
    /// The teacher of the batch just filled for <paramref name="step"/>; <paramref name="fullModel"/> runs the full model
    /// (every gate 1) on it when the teacher is computed on the fly. A teacher that is <see cref="IDisposable"/> (logits
    /// left on a device) is disposed by the caller after the step.
    /// </summary>
    internal abstract KdTeacher Teacher(long step, Func<KdTeacher> fullModel, int vocab);

    private protected static string Identity(int[] tokens) => $"{tokens.Length}:{TeacherCacheHeader.ChecksumTokens(tokens):x8}";
}

/// <summary>Random windows of a token stream (<see cref="TokenWindows"/>), the teacher being the full model run on the same batch.</summary>
public sealed class LiveTeacherBatches : SearchBatches
{
    private readonly TokenWindows windows;

    /// <param name="tokens">The token stream (at least T + 1 tokens).</param>
    /// <param name="sequenceLength">T.</param>
    /// <param name="batch">B.</param>
    /// <param name="seed">Selects the windows.</param>
    /// <param name="source">The data file, named in errors.</param>
    public LiveTeacherBatches(int[] tokens, int sequenceLength, int batch, ulong seed, string source)
    {
        windows = new TokenWindows(tokens, sequenceLength, batch, seed, source);
        DataIdentity = Identity(tokens);
    }

    /// <inheritdoc/>
    public override int SequenceLength => windows.SequenceLength;
    /// <inheritdoc/>
    public override int Batch => windows.Batch;
    /// <inheritdoc/>
    public override string DataIdentity { get; }
    /// <inheritdoc/>
    public override string TeacherIdentity => "live";

    /// <inheritdoc/>
    public override void Fill(long step, Span<int> inputs) => windows.Fill(step, inputs, default);

    internal override KdTeacher Teacher(long step, Func<KdTeacher> fullModel, int vocab) => fullModel();
}

/// <summary>
/// Sequences of a teacher cache (<c>e3 teacher-cache</c>) as batches, the teacher being the cached top-K: a cached
/// position's log-probabilities were computed with context from its shard's first token, so a batch row is always
/// one whole shard (T = the cache's sequence length) and never a window across shards. Only full-length shards are
/// used; row b of step s takes the shard a counter-based draw keyed by (seed, s, b) picks. Each step reads its rows'
/// shards from the file, so the cache need not fit in memory; the reader must stay open while the batches are used.
/// </summary>
public sealed class CachedTeacherBatches : SearchBatches
{
    private const uint Tag = 0x43414348u; // "CACH": a stream apart from TokenWindows' draws
    private readonly int[] tokens;
    private readonly int[] fullShards;
    private readonly TeacherCacheReader reader;
    private readonly ulong seed;
    private readonly int[] rowShards;

    /// <summary>
    /// Checks that the cache was made from <paramref name="tokens"/> (length and checksum), by the model in
    /// <paramref name="modelId"/> (the folder name the cache records) with <paramref name="vocab"/> columns; every
    /// mismatch is a <see cref="TeacherCacheException"/> naming the cache file and field.
    /// </summary>
    public CachedTeacherBatches(TeacherCacheReader reader, int[] tokens, string modelId, int vocab, int batch, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentNullException.ThrowIfNull(tokens);
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "--batch must be at least 1");
        var h = reader.Header;
        if (!h.IsForModel(modelId)) throw new TeacherCacheException(reader.Path, "model_id", $"'{h.ModelId}': the cache was made for another model than '{modelId}'");
        if (h.Vocab != vocab) throw new TeacherCacheException(reader.Path, "vocab", $"the cache has vocab {h.Vocab}, the model {vocab}");
        if (h.DataTokens != tokens.Length || h.DataChecksum != TeacherCacheHeader.ChecksumTokens(tokens))
            throw new TeacherCacheException(reader.Path, "data", $"the cache was made from {h.DataTokens} tokens with checksum {h.DataChecksum:x8}, not from the --data file ({tokens.Length} tokens, {TeacherCacheHeader.ChecksumTokens(tokens):x8})");
        fullShards = Enumerable.Range(0, reader.Shards.Count).Where(i => reader.Shards[i].Tokens == h.SequenceLength).ToArray();
        if (fullShards.Length == 0)
            throw new TeacherCacheException(reader.Path, "shards", $"none holds a full sequence of {h.SequenceLength} tokens");
        this.tokens = tokens;
        this.seed = seed;
        this.reader = reader;
        SequenceLength = h.SequenceLength;
        Batch = batch;
        rowShards = new int[batch];
        DataIdentity = Identity(tokens);
        TeacherIdentity = $"cache:{h.ModelId}:K{h.K}:T{h.SequenceLength}";
    }

    /// <inheritdoc/>
    public override int SequenceLength { get; }
    /// <inheritdoc/>
    public override int Batch { get; }
    /// <inheritdoc/>
    public override string DataIdentity { get; }
    /// <inheritdoc/>
    public override string TeacherIdentity { get; }

    /// <inheritdoc/>
    public override void Fill(long step, Span<int> inputs)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        if (inputs.Length != TokensPerBatch) throw new ArgumentException($"inputs holds {inputs.Length}; a batch is {TokensPerBatch}", nameof(inputs));
        for (int b = 0; b < Batch; b++)
        {
            var r = Philox4x32.Generate((uint)step, (uint)(step >> 32), (uint)b, Tag, (uint)seed, (uint)(seed >> 32));
            rowShards[b] = fullShards[(int)((((ulong)r.X1 << 32) | r.X0) % (ulong)fullShards.Length)];
            int first = checked((int)reader.Shards[rowShards[b]].FirstToken);
            tokens.AsSpan(first, SequenceLength).CopyTo(inputs.Slice(b * SequenceLength, SequenceLength));
        }
    }

    internal override KdTeacher Teacher(long step, Func<KdTeacher> fullModel, int vocab)
    {
        int k = reader.Header.K, rowEntries = SequenceLength * k;
        var indices = new int[Batch * rowEntries];
        var logProbs = new float[Batch * rowEntries];
        for (int b = 0; b < Batch; b++)
            reader.ReadShard(rowShards[b], indices.AsSpan(b * rowEntries, rowEntries), logProbs.AsSpan(b * rowEntries, rowEntries));
        return new SparseTeacher(indices, logProbs, TokensPerBatch, k, reader.Header.Vocab);
    }
}
