using E3.Backends.Numerics;
using E3.Backends;
using E3.Model.Decoder;
using E3.Pruning.Distillation;
using E3.Pruning.Masking;
using E3.Pruning.TeacherCache;

namespace E3.Pruning.Distill;

/// <summary>Where the distillation loss gets the teacher's distribution for a batch.</summary>
internal interface IKdTeacherSource
{
    /// <summary>The teacher's vocabulary width.</summary>
    int Vocab { get; }

    /// <summary>Names the teacher in errors (its config.json or cache file).</summary>
    string Source { get; }

    /// <summary>The teacher for batch <paramref name="batchIndex"/>, whose inputs are <paramref name="inputs"/> laid out [batch, T].</summary>
    KdTeacher For(long batchIndex, ReadOnlySpan<int> inputs, int batch);
}

/// <summary>
/// Dense logits from a loaded teacher model run with every gate at 1. On a backend that runs the distillation loss
/// itself (<see cref="IDistillationBackend"/>) the logits stay there (<see cref="BackendDenseTeacher"/>, to be disposed
/// after the step); elsewhere they are downloaded.
/// </summary>
internal sealed class ModelTeacherSource(DecoderModel teacher) : IKdTeacherSource
{
    /// <inheritdoc/>
    public int Vocab => teacher.Config.VocabSize;

    /// <inheritdoc/>
    public string Source => teacher.Config.SourcePath;

    /// <inheritdoc/>
    public KdTeacher For(long batchIndex, ReadOnlySpan<int> inputs, int batch)
    {
        var logits = new BackendDenseTeacher(teacher, inputs, batch);
        if (teacher.Backend is IDistillationBackend) return logits;
        using (logits) return logits.ToHost();
    }
}

/// <summary>
/// Batches and sparse teacher distributions from a teacher cache (<c>e3 teacher-cache</c>): each sequence is one
/// whole cache shard, chosen by a counter-based generator keyed by (seed, batch index, row), because the cached
/// top-K of a token depends on the context its shard started at. The token stream must be the one the cache was
/// made from (its checksum is compared).
/// </summary>
internal sealed class TeacherCacheBatches : IBatchSource, IKdTeacherSource
{
    readonly TeacherCacheReader _cache;
    readonly int[] _tokens;
    readonly ulong _seed;
    readonly int _ignoreIndex;
    readonly int _fullShards;

    /// <param name="cache">The open cache (owned by the caller).</param>
    /// <param name="tokens">The token stream the cache was made from.</param>
    /// <param name="dataSource">The data file, for errors.</param>
    /// <param name="batch">Sequences (shards) per batch.</param>
    /// <param name="seed">Selects the shards.</param>
    /// <param name="ignoreIndex">Target of a shard's last token when the stream ends there.</param>
    public TeacherCacheBatches(TeacherCacheReader cache, int[] tokens, string dataSource, int batch, ulong seed, int ignoreIndex)
    {
        ArgumentNullException.ThrowIfNull(cache);
        var h = cache.Header;
        if (h.DataTokens != tokens.Length || h.DataChecksum != TeacherCacheHeader.ChecksumTokens(tokens))
            throw new TeacherCacheException(cache.Path, "data_checksum", $"the cache was made from other data than {dataSource} ({h.DataTokens} tokens)");
        _cache = cache;
        _tokens = tokens;
        _seed = seed;
        _ignoreIndex = ignoreIndex;
        Batch = batch;
        _fullShards = cache.Shards.Count(s => s.Tokens == h.SequenceLength);
        if (_fullShards == 0)
            throw new TeacherCacheException(cache.Path, "shards", $"no shard holds a full sequence of {h.SequenceLength} tokens");
    }

    /// <inheritdoc/>
    public int SequenceLength => _cache.Header.SequenceLength;

    /// <inheritdoc/>
    public int Batch { get; }

    /// <inheritdoc/>
    public int Vocab => _cache.Header.Vocab;

    /// <inheritdoc/>
    public string Source => _cache.Path;

    /// <summary>The shard that row <paramref name="row"/> of batch <paramref name="index"/> reads (full shards only; they come first).</summary>
    public int ShardOf(long index, int row)
    {
        var r = Philox4x32.Generate((uint)index, (uint)(index >> 32), (uint)row, 0x54434348u, (uint)_seed, (uint)(_seed >> 32));
        return (int)((((ulong)r.X1 << 32) | r.X0) % (ulong)_fullShards);
    }

    /// <inheritdoc/>
    public void Fill(long index, Span<int> inputs, Span<int> targets)
    {
        int t = SequenceLength;
        for (int row = 0; row < Batch; row++)
        {
            var shard = _cache.Shards[ShardOf(index, row)];
            int first = checked((int)shard.FirstToken);
            _tokens.AsSpan(first, t).CopyTo(inputs.Slice(row * t, t));
            int available = Math.Min(t, _tokens.Length - first - 1);
            _tokens.AsSpan(first + 1, available).CopyTo(targets.Slice(row * t, available));
            targets.Slice(row * t + available, t - available).Fill(_ignoreIndex);
        }
    }

    /// <inheritdoc/>
    public KdTeacher For(long batchIndex, ReadOnlySpan<int> inputs, int batch)
    {
        int t = SequenceLength, k = _cache.Header.K;
        var indices = new int[batch * t * k];
        var logProbs = new float[indices.Length];
        for (int row = 0; row < batch; row++)
            _cache.ReadShard(ShardOf(batchIndex, row), indices.AsSpan(row * t * k, t * k), logProbs.AsSpan(row * t * k, t * k));
        return new SparseTeacher(indices, logProbs, batch * t, k, Vocab);
    }
}
