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
                var row = logits.AsSpan(t * 40, 40).ToArray();
                double max = row.Max(), lse = max + Math.Log(row.Sum(v => Math.Exp(v - max)));
                var want = row.Select((v, i) => (v, i)).OrderByDescending(p => p.v).ThenBy(p => p.i).Take(k).ToArray();
                for (int j = 0; j < k; j++)
                {
                    Assert.Equal(want[j].i, indices[t * k + j]);
                    // fp32 log-softmax of logits of size ~1: a few ulps of the largest term.
                    Assert.Equal(want[j].v - lse, logProbs[t * k + j], 1e-5);
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
}
