using E3.Backends.Cpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Pruning.TeacherCache;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.TeacherCache;

/// <summary>
/// The library's cache builder: every token's stored entries are the teacher's own top-K log-probabilities of that
/// sequence, a second call finds the complete cache and computes nothing, and a call with other arguments is refused
/// naming what differs. (<c>e3 teacher-cache</c>'s tests cover interruption and resumption through the same code.)
/// </summary>
public sealed class TeacherCacheBuilderTests
{
    [Fact]
    public void TheCacheHoldsTheTeachersTopKAndASecondBuildComputesNothing()
    {
        using var dir = new TempDir();
        RandomModel.Write(new RandomModelSpec { Layers = 2, Hidden = 16, Heads = 2, KvHeads = 1, HeadDim = 8, Intermediate = 24, Vocab = 40, Seed = 3 }, dir["model"]);
        using var backend = new CpuBackend(2);
        using var teacher = DecoderModel.Load(dir["model"], backend);
        int[] tokens = Enumerable.Range(0, 23).Select(i => (i * 7) % 40).ToArray();
        const int k = 4, seq = 8;
        var seen = new List<(long Done, long Total)>();

        var first = TeacherCacheBuilder.Build(teacher, tokens, k, seq, dir["c.e3tc"], (d, t) => seen.Add((d, t)));
        Assert.Equal((false, 23L, 23L, 3), (first.Resumed, first.Tokens, first.TokensComputed, first.Shards));
        Assert.Equal([(0L, 23L), (8L, 23L), (16L, 23L), (23L, 23L)], seen);
        Assert.False(File.Exists(dir["c.e3tc"] + ".partial"));

        // Shard s holds sequence s: compare with the teacher's log-softmax of that sequence, computed here in double.
        using var reader = TeacherCacheReader.Open(dir["c.e3tc"]);
        Assert.Equal(3, reader.ShardCount);
        for (int s = 0; s < 3; s++)
        {
            int n = Math.Min(seq, tokens.Length - s * seq);
            Assert.Equal(n, reader.ShardTokens(s));
            var indices = new int[n * k];
            var logProbs = new float[n * k];
            reader.ReadShard(s, indices, logProbs);
            float[] logits = teacher.Forward(tokens.AsSpan(s * seq, n));
            for (int t = 0; t < n; t++)
            {
                var want = TeachersTopK(logits.AsSpan(t * 40, 40), k);
                for (int j = 0; j < k; j++)
                {
                    Assert.Equal(want[j].Index, indices[t * k + j]);
                    // fp32 log-softmax of logits of size ~1: a few ulps of the largest term.
                    Assert.Equal(want[j].LogProb, logProbs[t * k + j], 1e-5);
                }
            }
        }

        var again = TeacherCacheBuilder.Build(teacher, tokens, k, seq, dir["c.e3tc"]);
        Assert.Equal((true, 23L, 0L), (again.Resumed, again.Tokens, again.TokensComputed));
        var other = Assert.Throws<TeacherCacheException>(() => TeacherCacheBuilder.Build(teacher, tokens, k + 1, seq, dir["c.e3tc"]));
        Assert.Equal("K", other.Field);
        var badK = Assert.Throws<ArgumentException>(() => TeacherCacheBuilder.Build(teacher, tokens, 41, seq, dir["d.e3tc"]));
        Assert.Contains("--topk: 41 exceeds the model's vocab_size 40", badK.Message);
        Assert.False(File.Exists(dir["d.e3tc.partial"]));
    }

    [Fact]
    public void TheSearchsCachedBatchesGiveEachRowTheTeachersTopKOfItsOwnSequence()
    {
        // The search reads a step's shards from the file as it goes: every row must get the tokens of one whole cached
        // sequence and, for each position, the teacher's own top-K of that sequence, whichever shards the draws pick.
        using var dir = new TempDir();
        RandomModel.Write(new RandomModelSpec { Layers = 2, Hidden = 16, Heads = 2, KvHeads = 1, HeadDim = 8, Intermediate = 24, Vocab = 40, Seed = 4 }, dir["model"]);
        using var backend = new CpuBackend(2);
        using var teacher = DecoderModel.Load(dir["model"], backend);
        var rng = new Random(7);
        int[] tokens = Enumerable.Range(0, 50).Select(_ => rng.Next(40)).ToArray();
        const int k = 3, seq = 8, batch = 3;
        TeacherCacheBuilder.Build(teacher, tokens, k, seq, dir["c.e3tc"]);
        using var reader = TeacherCacheReader.Open(dir["c.e3tc"]);
        var batches = new E3.Pruning.Search.CachedTeacherBatches(reader, tokens, TeacherCacheHeader.ModelIdOf(dir["model"]), 40, batch, seed: 9);
        var inputs = new int[batch * seq];
        var starts = new HashSet<int>();
        for (long step = 0; step < 6; step++)
        {
            batches.Fill(step, inputs);
            var sparse = (E3.Pruning.Distillation.SparseTeacher)batches.Teacher(step, () => throw new InvalidOperationException("the cache is the teacher"), 40);
            for (int b = 0; b < batch; b++)
            {
                var row = inputs.AsSpan(b * seq, seq).ToArray();
                // A whole sequence of the stream, starting at a shard boundary; the last, short shard is never drawn.
                int start = Enumerable.Range(0, 6).Select(s => s * seq).Single(s => tokens.AsSpan(s, seq).SequenceEqual(row));
                starts.Add(start);
                float[] logits = teacher.Forward(row);
                for (int t = 0; t < seq; t++)
                {
                    var want = TeachersTopK(logits.AsSpan(t * 40, 40), k);
                    for (int j = 0; j < k; j++)
                    {
                        int at = (b * seq + t) * k + j;
                        Assert.Equal(want[j].Index, sparse.Indices.Span[at]);
                        Assert.Equal(want[j].LogProb, sparse.LogProbs.Span[at], 1e-5);
                    }
                }
            }
        }
        Assert.True(starts.Count > 1, "the draws picked a single shard");
    }

    /// <summary>The K largest log-probabilities of one position's logits, in double, larger first and ties to the lower index.</summary>
    static (int Index, double LogProb)[] TeachersTopK(ReadOnlySpan<float> logits, int k)
    {
        var z = logits.ToArray();
        double max = z.Max(), lse = max + Math.Log(z.Sum(v => Math.Exp(v - max)));
        return z.Select((v, i) => (Index: i, LogProb: v - lse)).OrderByDescending(p => p.LogProb).ThenBy(p => p.Index).Take(k).ToArray();
    }
}
