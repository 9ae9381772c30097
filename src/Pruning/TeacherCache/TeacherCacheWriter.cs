using E3.Interop.IO;
using E3.Model.IO;

namespace E3.Pruning.TeacherCache;

/// <summary>
/// Appends shards to a teacher cache. <see cref="Create"/> writes the header atomically (temp file, then rename);
/// each <see cref="Append"/> writes one whole shard and flushes it to disk before returning, so an interruption
/// loses at most the shard being written, which <see cref="Resume"/> detects (it is cut short) and drops.
/// </summary>
public sealed class TeacherCacheWriter : IDisposable
{
    private readonly FileStream stream;

    private TeacherCacheWriter(string path, TeacherCacheHeader header, FileStream stream, long tokensWritten, int shards)
    {
        Path = path;
        Header = header;
        this.stream = stream;
        TokensWritten = tokensWritten;
        ShardCount = shards;
    }

    /// <summary>The cache file.</summary>
    public string Path { get; }

    /// <summary>Its header.</summary>
    public TeacherCacheHeader Header { get; }

    /// <summary>Token positions stored so far (the next shard's first token).</summary>
    public long TokensWritten { get; private set; }

    /// <summary>Complete shards in the file.</summary>
    public int ShardCount { get; private set; }

    /// <summary>True once every token of the data is stored.</summary>
    public bool IsComplete => TokensWritten == Header.DataTokens;

    /// <summary>Starts a new cache at <paramref name="path"/>, replacing any file there.</summary>
    public static TeacherCacheWriter Create(string path, TeacherCacheHeader header)
    {
        var bytes = header.ToBytes();
        using (var file = AtomicFile.Create(path))
        {
            file.Stream.Write(bytes);
            file.Commit();
        }
        var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        stream.Seek(0, SeekOrigin.End);
        return new TeacherCacheWriter(path, header, stream, 0, 0);
    }

    /// <summary>
    /// Reopens an interrupted cache: verifies the header against <paramref name="expected"/> and every complete
    /// shard, drops a trailing shard cut short by the interruption, and continues after the last complete one.
    /// </summary>
    public static TeacherCacheWriter Resume(string path, TeacherCacheHeader expected)
    {
        var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        try
        {
            var header = TeacherCacheHeader.Read(stream, path);
            header.RequireMatch(expected, path);
            var shards = ShardLayout.Scan(stream, header, path, tolerateTruncatedTail: true, out long validEnd);
            if (validEnd < stream.Length)
            {
                stream.SetLength(validEnd);
                stream.Flush(flushToDisk: true);
            }
            stream.Seek(validEnd, SeekOrigin.Begin);
            long tokens = shards.Count == 0 ? 0 : shards[^1].FirstToken + shards[^1].Tokens;
            return new TeacherCacheWriter(path, header, stream, tokens, shards.Count);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Appends the entries of <paramref name="tokens"/> positions (indices and log-probabilities, [tokens, K]
    /// each) as one shard and flushes it to disk.
    /// </summary>
    public void Append(ReadOnlySpan<int> indices, ReadOnlySpan<float> logProbs, int tokens)
    {
        int k = Header.K;
        if (tokens < 1 || tokens > Header.SequenceLength)
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"a shard holds 1 to {Header.SequenceLength} tokens");
        if (indices.Length != tokens * k || logProbs.Length != tokens * k)
            throw new ArgumentException($"{indices.Length} indices and {logProbs.Length} log-probabilities for {tokens} tokens of top-{k}");
        if (TokensWritten + tokens > Header.DataTokens)
            throw new InvalidOperationException($"{Path}: {TokensWritten} + {tokens} tokens exceed the {Header.DataTokens} of the data");
        stream.Write(ShardLayout.Encode(indices, logProbs, tokens, TokensWritten, k));
        stream.Flush(flushToDisk: true);
        TokensWritten += tokens;
        ShardCount++;
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => stream.Dispose();
}
