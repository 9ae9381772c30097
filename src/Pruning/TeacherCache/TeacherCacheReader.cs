using E3.Pruning.Distillation;

namespace E3.Pruning.TeacherCache;

/// <summary>
/// Opens a teacher cache and verifies all of it up front: magic, version, header checksum, every shard's
/// checksum, contiguity and entries, and that the shards cover the whole data (no truncation).
/// </summary>
public sealed class TeacherCacheReader : IDisposable
{
    private readonly FileStream stream;
    private readonly List<ShardInfo> shards;

    private TeacherCacheReader(string path, FileStream stream, TeacherCacheHeader header, List<ShardInfo> shards)
    {
        Path = path;
        this.stream = stream;
        Header = header;
        this.shards = shards;
    }

    /// <summary>The cache file.</summary>
    public string Path { get; }

    /// <summary>Its header.</summary>
    public TeacherCacheHeader Header { get; }

    /// <summary>The verified shards in file order.</summary>
    internal IReadOnlyList<ShardInfo> Shards => shards;

    /// <summary>Shards in the cache: one per sequence of <see cref="TeacherCacheHeader.SequenceLength"/> tokens (the last may be shorter).</summary>
    public int ShardCount => shards.Count;

    /// <summary>Token positions shard <paramref name="index"/> holds (<see cref="ReadShard"/> fills K entries for each).</summary>
    public int ShardTokens(int index) => (uint)index < (uint)shards.Count
        ? shards[index].Tokens
        : throw new ArgumentOutOfRangeException(nameof(index), index, $"{Path} has {shards.Count} shards");

    /// <summary>Opens and verifies <paramref name="path"/>; an incomplete cache is an error unless <paramref name="allowIncomplete"/>.</summary>
    public static TeacherCacheReader Open(string path, bool allowIncomplete = false)
    {
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            var header = TeacherCacheHeader.Read(stream, path);
            var shards = ShardLayout.Scan(stream, header, path, tolerateTruncatedTail: false, out _);
            long tokens = shards.Count == 0 ? 0 : shards[^1].FirstToken + shards[^1].Tokens;
            if (!allowIncomplete && tokens != header.DataTokens)
                throw new TeacherCacheException(path, "shards", $"truncated: they cover {tokens} of the {header.DataTokens} tokens of the data");
            return new TeacherCacheReader(path, stream, header, shards);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Throws, naming the field, unless the cache was made with top-<paramref name="k"/> over <paramref name="vocab"/> columns.</summary>
    public void RequireModel(int k, int vocab)
    {
        if (Header.K != k) throw new TeacherCacheException(Path, "K", $"the cache holds top-{Header.K}, expected top-{k}");
        if (Header.Vocab != vocab) throw new TeacherCacheException(Path, "vocab", $"the cache has vocab {Header.Vocab}, the model {vocab}");
    }

    /// <summary>Reads shard <paramref name="index"/> into spans of tokens·K entries.</summary>
    public void ReadShard(int index, Span<int> indices, Span<float> logProbs)
    {
        var shard = shards[index];
        var body = new byte[ShardLayout.PayloadBytes(shard.Tokens, Header.K)];
        stream.Seek(shard.Offset + ShardLayout.PrefixBytes, SeekOrigin.Begin);
        TeacherCacheHeader.ReadFully(stream, body);
        ShardLayout.Decode(body, shard.Tokens, Header.K, indices, logProbs);
    }

    /// <summary>Every stored token as a sparse teacher for the loss.</summary>
    internal SparseTeacher ToSparseTeacher()
    {
        long total = shards.Count == 0 ? 0 : shards[^1].FirstToken + shards[^1].Tokens;
        int k = Header.K;
        var indices = new int[checked(total * k)];
        var logProbs = new float[indices.Length];
        for (int i = 0; i < shards.Count; i++)
        {
            int start = checked((int)(shards[i].FirstToken * k)), n = shards[i].Tokens * k;
            ReadShard(i, indices.AsSpan(start, n), logProbs.AsSpan(start, n));
        }
        return new SparseTeacher(indices, logProbs, (int)total, k, Header.Vocab);
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => stream.Dispose();
}
