using E3.Pruning.TeacherCache;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.TeacherCache;

/// <summary>The cache format: round trip, top-K selection, and every kind of bad file rejected with file and field named.</summary>
public sealed class TeacherCacheFileTests
{
    private static TeacherCacheHeader Header(int k = 3, int vocab = 50, long tokens = 10) =>
        new(k, vocab, TeacherCacheDType.Float32, "tiny-teacher", 4, tokens, 0xdeadbeef);

    // Shards of 4, 4 and 2 tokens with distinct, checkable entries.
    private static string WriteCache(TempDir dir, TeacherCacheHeader header)
    {
        string path = dir["cache.e3tk"];
        using var writer = TeacherCacheWriter.Create(path, header);
        for (long start = 0; start < header.DataTokens; start += header.SequenceLength)
        {
            int n = (int)Math.Min(header.SequenceLength, header.DataTokens - start);
            var (indices, logProbs) = Entries(start, n, header.K, header.Vocab);
            writer.Append(indices, logProbs, n);
        }
        Assert.True(writer.IsComplete);
        return path;
    }

    private static (int[], float[]) Entries(long start, int tokens, int k, int vocab)
    {
        var indices = new int[tokens * k];
        var logProbs = new float[tokens * k];
        for (int i = 0; i < indices.Length; i++)
        {
            indices[i] = (int)((start * k + i) * 7 % vocab);
            logProbs[i] = -0.25f * (i % k + 1) - start;
        }
        return (indices, logProbs);
    }

    [Fact]
    public void RoundTripGivesBackEveryEntry()
    {
        using var dir = new TempDir();
        var header = Header();
        string path = WriteCache(dir, header);
        using var reader = TeacherCacheReader.Open(path);
        Assert.Equal(header, reader.Header);
        Assert.Equal([4, 4, 2], reader.Shards.Select(s => s.Tokens));
        var teacher = reader.ToSparseTeacher();
        Assert.Equal(10, teacher.Rows);
        for (long start = 0; start < 10; start += 4)
        {
            int n = (int)Math.Min(4, 10 - start);
            var (indices, logProbs) = Entries(start, n, 3, 50);
            Assert.Equal(indices, teacher.Indices.Slice((int)start * 3, n * 3).ToArray());
            Assert.Equal(logProbs, teacher.LogProbs.Slice((int)start * 3, n * 3).ToArray());
        }
    }

    [Fact]
    public void TopKMatchesFullSortAndDoubleLogSoftmax()
    {
        var random = new Random(3);
        var row = new float[1000];
        for (int i = 0; i < row.Length; i++) row[i] = (float)(random.NextDouble() * 20 - 10);
        row[10] = row[20] = 9.99f; // a tie: the lower index comes first
        var indices = new int[10];
        var logProbs = new float[10];
        TopKSelector.Select(row, indices, logProbs);
        var expected = Enumerable.Range(0, row.Length).OrderByDescending(i => row[i]).ThenBy(i => i).Take(10).ToArray();
        Assert.Equal(expected, indices);
        double lse = Math.Log(row.Sum(z => Math.Exp(z)));
        for (int i = 0; i < 10; i++) Assert.Equal(row[indices[i]] - lse, logProbs[i], 2e-6); // fp32 storage: half an ulp of values up to ~16 is 1e-6
    }

    [Fact]
    public void TruncatedCacheIsRejected()
    {
        using var dir = new TempDir();
        string path = WriteCache(dir, Header());
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^7]);
        var error = Assert.Throws<TeacherCacheException>(() => TeacherCacheReader.Open(path));
        Assert.Contains(path, error.Message);
        Assert.Contains("shard 2", error.Field);
        Assert.Contains("truncated", error.Message);

        // Whole shards missing: the data is not covered.
        using (var writer = TeacherCacheWriter.Create(path, Header()))
        {
            var (indices, logProbs) = Entries(0, 4, 3, 50);
            writer.Append(indices, logProbs, 4);
        }
        var missing = Assert.Throws<TeacherCacheException>(() => TeacherCacheReader.Open(path));
        Assert.Equal("shards", missing.Field);
        Assert.Contains("4 of the 10 tokens", missing.Message);
    }

    [Fact]
    public void ChecksumMismatchIsRejected()
    {
        using var dir = new TempDir();
        string path = WriteCache(dir, Header());
        var bytes = File.ReadAllBytes(path);
        bytes[^20] ^= 0x01; // a log-probability bit in the last shard
        File.WriteAllBytes(path, bytes);
        var error = Assert.Throws<TeacherCacheException>(() => TeacherCacheReader.Open(path));
        Assert.Equal("shard 2 (byte " + (bytes.Length - ShardBytes(2, 3)) + ") checksum", error.Field);
        Assert.Contains(path, error.Message);

        bytes = File.ReadAllBytes(WriteCache(dir, Header()));
        bytes[30] ^= 0x10; // inside the header's data-token count
        File.WriteAllBytes(path, bytes);
        Assert.Equal("header checksum", Assert.Throws<TeacherCacheException>(() => TeacherCacheReader.Open(path)).Field);
    }

    private static int ShardBytes(int tokens, int k) => 16 + tokens * k * 8 + 4;

    [Fact]
    public void WrongMagicAndVersionAreRejected()
    {
        using var dir = new TempDir();
        string path = WriteCache(dir, Header());
        var bytes = File.ReadAllBytes(path);
        var magic = (byte[])bytes.Clone();
        magic[0] = (byte)'X';
        File.WriteAllBytes(path, magic);
        var error = Assert.Throws<TeacherCacheException>(() => TeacherCacheReader.Open(path));
        Assert.Equal("magic", error.Field);
        Assert.Contains(path, error.Message);

        var version = (byte[])bytes.Clone();
        version[8] = 2;
        File.WriteAllBytes(path, version);
        var versionError = Assert.Throws<TeacherCacheException>(() => TeacherCacheReader.Open(path));
        Assert.Equal("version", versionError.Field);
        Assert.Contains("2 is not supported", versionError.Message);
    }

    [Fact]
    public void KOrVocabMismatchWithTheModelIsRejected()
    {
        using var dir = new TempDir();
        string path = WriteCache(dir, Header());
        using (var reader = TeacherCacheReader.Open(path))
        {
            var k = Assert.Throws<TeacherCacheException>(() => reader.RequireModel(10, 50));
            Assert.Equal("K", k.Field);
            Assert.Contains("top-3, expected top-10", k.Message);
            var vocab = Assert.Throws<TeacherCacheException>(() => reader.RequireModel(3, 151_936));
            Assert.Equal("vocab", vocab.Field);
            Assert.Contains(path, vocab.Message);
        }
        // Resuming with another K or vocabulary is the same error.
        Assert.Equal("K", Assert.Throws<TeacherCacheException>(() => TeacherCacheWriter.Resume(path, Header(k: 4))).Field);
        Assert.Equal("vocab", Assert.Throws<TeacherCacheException>(() => TeacherCacheWriter.Resume(path, Header(vocab: 60))).Field);
    }

    [Fact]
    public void ResumeDropsAShardCutShortAndContinuesAfterTheLastCompleteOne()
    {
        using var dir = new TempDir();
        var header = Header();
        string path = WriteCache(dir, header);
        var full = File.ReadAllBytes(path);
        File.WriteAllBytes(path, full[..^(ShardBytes(2, 3) + 5)]); // the last shard gone, the one before cut short
        using (var writer = TeacherCacheWriter.Resume(path, header))
        {
            Assert.Equal(4, writer.TokensWritten);
            for (long start = 4; start < 10; start += 4)
            {
                int n = (int)Math.Min(4, 10 - start);
                var (indices, logProbs) = Entries(start, n, 3, 50);
                writer.Append(indices, logProbs, n);
            }
        }
        Assert.Equal(full, File.ReadAllBytes(path));
    }
}
