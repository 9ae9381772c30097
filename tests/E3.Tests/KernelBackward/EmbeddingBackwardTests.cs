using E3.Interop.Kernels;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using Xunit;

namespace E3.Tests.KernelBackward;

/// <summary>e3_embedding_backward_f32 through <see cref="EmbeddingKernels.Backward"/>: dtable[ids[t]] += dy[t] with atomics,
/// whose fp32 summation order is not fixed.</summary>
[Collection(EmuCollection.Name)]
public sealed class EmbeddingBackwardTests : BackwardHarness
{
    const int Vocab = 5;

    [Theory]
    [MemberData(nameof(Shapes))]
    public void IntegerGradientsAccumulateExactlyAndUnusedRowsStayZero(int tokens, int dim)
    {
        var ids = Ids(tokens, seed: tokens * 7 + dim);
        var random = new Random(dim * 3 + tokens);
        // Integers in [-8, 8]: every partial sum of ≤ 7 of them is an integer far below 2^24, exact in fp32 whatever
        // order the atomics add in, so the result must equal the exact sum bit for bit.
        var dy = Enumerable.Range(0, tokens * dim).Select(_ => (float)random.Next(-8, 9)).ToArray();
        using var kernels = new EmbeddingKernels(Device);
        var dtable = Upload<float>(new float[Vocab * dim]);
        kernels.Backward(Upload<float>(dy), Upload<int>(ids), dtable, tokens, dim, Stream);
        var got = Download(dtable, Vocab * dim);

        var want = new float[Vocab * dim];
        for (int t = 0; t < tokens; t++)
            for (int c = 0; c < dim; c++)
                want[ids[t] * dim + c] += dy[t * dim + c];
        Assert.Equal(want, got);
        foreach (int unused in Enumerable.Range(0, Vocab).Except(ids))
            Assert.All(got.AsSpan(unused * dim, dim).ToArray(), v => Assert.Equal(0u, BitConverter.SingleToUInt32Bits(v)));
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void RandomGradientsAddToThePriorWithinTheSummationBound(int tokens, int dim)
    {
        var ids = Ids(tokens, seed: tokens * 11 + dim);
        var dy = Approx.Random(tokens * dim, 80 + dim);
        var prior = Approx.Random(Vocab * dim, 90 + tokens); // dtable may hold a gradient to accumulate into
        using var kernels = new EmbeddingKernels(Device);
        var dtable = Upload<float>(prior);
        kernels.Backward(Upload<float>(dy), Upload<int>(ids), dtable, tokens, dim, Stream);
        var got = Download(dtable, Vocab * dim);

        var want = prior.Select(v => (double)v).ToArray();
        var magnitude = prior.Select(v => (double)Math.Abs(v)).ToArray();
        var hits = new int[Vocab];
        foreach (int id in ids) hits[id]++;
        for (int t = 0; t < tokens; t++)
            for (int c = 0; c < dim; c++)
            {
                want[ids[t] * dim + c] += dy[t * dim + c];
                magnitude[ids[t] * dim + c] += Math.Abs(dy[t * dim + c]);
            }
        // k atomic additions onto the prior, in any order: each rounds once, so the error is at most k·u of the sum of
        // magnitudes (γ_k); rows no token uses get no addition and must keep the prior exactly.
        Func<int, double> bound = i => hits[i / dim] * U * magnitude[i];
        Approx.Close(want, got, bound, $"dtable {tokens}x{dim}");

        // L(table) = Σ_t dy[t]·table[ids[t]]: linear, so its central difference is the gradient up to rounding.
        var gradient = got.Select((v, i) => v - prior[i]).ToArray(); // the kernel's contribution, one more rounding
        SpotCheck($"dtable {tokens}x{dim}", gradient, table => Loss(table, ids, dy, dim), new double[Vocab * dim],
            i => bound(i) + U * (Math.Abs(got[i]) + Math.Abs(prior[i])), i => magnitude[i], seed: tokens + dim);
    }

    [Fact]
    public void BadShapesNameTheFieldAndNoTokensLeaveTheTableUntouched()
    {
        using var kernels = new EmbeddingKernels(Device);
        var buffer = Upload<float>([1f, 2f]);
        var ids = Upload<int>([0]);
        var tokens = Assert.Throws<ArgumentOutOfRangeException>(() => kernels.Backward(buffer, ids, buffer, -1, 2, Stream));
        Assert.Equal("tokens", tokens.ParamName);
        var dim = Assert.Throws<ArgumentOutOfRangeException>(() => kernels.Backward(buffer, ids, buffer, 1, 0, Stream));
        Assert.Equal("dim", dim.ParamName);
        Assert.Contains("0", dim.Message);

        var dtable = Upload<float>([3f, 4f]);
        kernels.Backward(buffer, ids, dtable, 0, 2, Stream);
        Assert.Equal([3f, 4f], Download(dtable, 2));
    }

    // Ids over the first Vocab - 1 rows (the last is never used), with the first id repeated so that several tokens
    // add into one row whenever there are at least two tokens.
    static int[] Ids(int tokens, int seed)
    {
        var random = new Random(seed);
        var ids = Enumerable.Range(0, tokens).Select(_ => random.Next(Vocab - 1)).ToArray();
        if (tokens > 1) ids[tokens - 1] = ids[0];
        return ids;
    }

    static double Loss(double[] table, int[] ids, float[] dy, int dim)
    {
        double loss = 0;
        for (int t = 0; t < ids.Length; t++)
            for (int c = 0; c < dim; c++) loss += dy[t * dim + c] * table[ids[t] * dim + c];
        return loss;
    }
}
