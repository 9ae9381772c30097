using System.Diagnostics;
using E3.Model.Decoder;

namespace E3.Pruning.TeacherCache;

/// <summary>What <see cref="TeacherCacheBuilder.Build"/> did.</summary>
/// <param name="Path">The complete cache file.</param>
/// <param name="Resumed">Whether an interrupted build (or a complete cache) was found and continued rather than started afresh.</param>
/// <param name="Tokens">Tokens in the cache.</param>
/// <param name="TokensComputed">Tokens this call ran the teacher on (0 when the cache was already complete).</param>
/// <param name="Shards">Shards in the cache: one per sequence.</param>
/// <param name="Seconds">Wall time of this call's teacher passes.</param>
public sealed record TeacherCacheBuild(string Path, bool Resumed, long Tokens, long TokensComputed, int Shards, double Seconds);

/// <summary>
/// Builds an offline top-K teacher cache: the teacher runs over the token stream in sequences of a fixed length, and
/// each position's K largest log-probabilities are stored with their token ids, one shard per sequence (about 10
/// entries a token instead of a vocabulary's logits). Distillation and the mask search then read the cache instead of
/// running the teacher. <c>e3 teacher-cache</c> runs exactly this.
/// </summary>
public static class TeacherCacheBuilder
{
    /// <summary>
    /// Writes the cache of <paramref name="tokens"/> to <paramref name="output"/>. It is built in
    /// <paramref name="output"/>.partial, which a later call with the same arguments resumes (complete shards are kept,
    /// nothing is recomputed), and renamed to <paramref name="output"/> once every token is in, so a file there is always
    /// complete; an existing complete cache is checked against the arguments and returned as it is.
    /// </summary>
    /// <param name="teacher">The teacher, loaded from its Hugging Face folder (the cache records the folder's model id).</param>
    /// <param name="tokens">The token stream, ids of the teacher's vocabulary.</param>
    /// <param name="topK">K: entries stored per token, at most the vocabulary size.</param>
    /// <param name="sequenceLength">Tokens per teacher pass and per shard; a distillation reading the cache trains on sequences of this length.</param>
    /// <param name="output">The cache file.</param>
    /// <param name="progress">Called with (tokens in the cache, tokens in all) before the first pass and after each.</param>
    /// <exception cref="ArgumentException">An empty stream, an id outside the vocabulary, or K or the length out of range, naming the value.</exception>
    /// <exception cref="TeacherCacheException">An existing or partial cache made with other arguments, naming the field that differs.</exception>
    public static TeacherCacheBuild Build(DecoderModel teacher, int[] tokens, int topK, int sequenceLength, string output, Action<long, long>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(tokens);
        int vocab = teacher.Config.VocabSize;
        if (topK < 1) throw new ArgumentException($"--topk: {topK} must be >= 1");
        if (topK > vocab) throw new ArgumentException($"--topk: {topK} exceeds the model's vocab_size {vocab}");
        if (sequenceLength < 1) throw new ArgumentException($"--seq-len: {sequenceLength} must be >= 1");
        if (tokens.Length == 0) throw new ArgumentException("the token stream is empty; a teacher cache needs at least one token", nameof(tokens));
        teacher.ValidateTokens(tokens);
        string folder = Path.GetDirectoryName(teacher.Config.SourcePath) is { Length: > 0 } dir && Directory.Exists(dir)
            ? dir
            : throw new ArgumentException($"the teacher was not loaded from a model folder ({teacher.Config.SourcePath}); the cache records the folder's model id", nameof(teacher));
        var header = new TeacherCacheHeader(topK, vocab, TeacherCacheDType.Float32, TeacherCacheHeader.ModelIdOf(folder), sequenceLength,
            tokens.Length, TeacherCacheHeader.ChecksumTokens(tokens));

        string partial = PartialPath(output);
        bool complete = File.Exists(output), resumed = complete || File.Exists(partial);
        using var writer = complete ? TeacherCacheWriter.Resume(output, header)
            : resumed ? TeacherCacheWriter.Resume(partial, header) : TeacherCacheWriter.Create(partial, header);
        long startTokens = writer.TokensWritten;
        var clock = Stopwatch.StartNew();
        progress?.Invoke(writer.TokensWritten, header.DataTokens);
        Fill(teacher, tokens, writer, done => progress?.Invoke(done, header.DataTokens));
        double seconds = clock.Elapsed.TotalSeconds;
        if (!complete)
        {
            if (!writer.IsComplete) throw new InvalidOperationException($"{partial}: {writer.TokensWritten} of {header.DataTokens} tokens written");
            writer.Dispose();
            File.Move(partial, output);
        }
        return new TeacherCacheBuild(output, resumed, writer.TokensWritten, writer.TokensWritten - startTokens, writer.ShardCount, seconds);
    }

    /// <summary>Where a cache is built, and an interrupted build resumed, before it is renamed to <paramref name="output"/>.</summary>
    static string PartialPath(string output) => output + ".partial";

    // One forward pass and one shard per sequence; shards start at multiples of the sequence length.
    static void Fill(DecoderModel teacher, int[] ids, TeacherCacheWriter writer, Action<long> progress)
    {
        var header = writer.Header;
        int k = header.K;
        if (writer.TokensWritten % header.SequenceLength != 0 && !writer.IsComplete)
            throw new TeacherCacheException(writer.Path, "shards", $"they end at token {writer.TokensWritten}, not at a sequence boundary of {header.SequenceLength}");
        var indices = new int[header.SequenceLength * k];
        var logProbs = new float[header.SequenceLength * k];
        for (long start = writer.TokensWritten; start < ids.Length; start += header.SequenceLength)
        {
            int n = (int)Math.Min(header.SequenceLength, ids.Length - start);
            TeacherTopK.Compute(teacher, ids.AsSpan((int)start, n), indices.AsSpan(0, n * k), logProbs.AsSpan(0, n * k));
            writer.Append(indices.AsSpan(0, n * k), logProbs.AsSpan(0, n * k), n);
            progress(writer.TokensWritten);
        }
    }
}
