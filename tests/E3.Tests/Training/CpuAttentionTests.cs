using E3.Backends;
using E3.Backends.Cpu;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using BackendTensor = E3.Backends.Tensor;
using TorchTensor = TorchSharp.torch.Tensor;

namespace E3.Tests.Training;

/// <summary>
/// The CPU backend's tiled causal GQA attention (training forward with saved log-sum-exp, two-pass backward, and prefill
/// over a KV cache) against TorchSharp autograd in float64 through the textbook formula softmax(q·kᵀ·scale + causal
/// mask)·v, at shapes that cross the 32-row query and key blocks, leave partial vectors in T and in the head dimension,
/// and share kv heads.
/// </summary>
public sealed class CpuAttentionTests
{
    // Each output element is a sum of at most T products of fp32 values after dot products of headDim terms; with the
    // O(1) random inputs here its rounding stays within (T + headDim)·2⁻²⁴ relative ≈ 1e-5 at these sizes. Gradients go
    // through one more such sum (dS = P·(dP − D) then dS·k); 1e-4 norm-wise, the bound of the whole-model gradient
    // tests, still flags any wrong or missing term, which shows as O(1) relative error.
    const double ForwardBound = 2e-5;
    const double GradientBound = 1e-4;

    public static TheoryData<int, int, int, int, int> Shapes() => new()
    {
        { 2, 100, 4, 2, 64 },  // three full query/key blocks and a partial one; two query heads per kv head
        { 1, 67, 6, 2, 12 },   // head dim with a partial vector; three query heads per kv head
        { 1, 33, 2, 2, 8 },    // one row past a block
        { 3, 1, 2, 1, 16 },    // each row sees only itself
        { 1, 130, 2, 1, 20 },  // four blocks plus two rows
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ForwardAndBackwardMatchTorchAutograd(int batch, int T, int heads, int kvHeads, int headDim)
    {
        var p = Problem.Create(batch, T, heads, kvHeads, headDim, seed: 7 + T);
        using var cpu = new CpuBackend(2);
        var got = p.Run(cpu);

        using var scope = NewDisposeScope();
        var want = Reference.Compute(p);
        AssertClose("o", want.O, got.O, ForwardBound);
        AssertClose("lse", want.Lse, got.Lse, ForwardBound);
        // With one visible key (T = 1) dS = P·(dP − D) cancels exactly and dq, dk are zero up to rounding of size
        // ε·|dO||v|, so there they are measured against ‖dO‖ rather than a zero reference.
        double floor = Math.Sqrt(p.DOut.Sum(x => (double)x * x));
        AssertClose("dq", want.Dq, got.Dq, GradientBound, floor);
        AssertClose("dk", want.Dk, got.Dk, GradientBound, floor);
        AssertClose("dv", want.Dv, got.Dv, GradientBound);
    }

    /// <summary>
    /// Inference attention over a KV cache (<see cref="CpuBackend.Attention"/>), fed in chunks that take the tiled path
    /// (≥ 16 rows, starting at position 0 and past it) and the direct one (decode rows), against the same reference.
    /// </summary>
    [Theory]
    [InlineData(2, 77, 4, 2, 64, new[] { 40, 20, 1, 16 })]
    [InlineData(1, 70, 6, 2, 12, new[] { 1, 3, 66 })]
    public void CachedPrefillInChunksMatchesTorch(int batch, int T, int heads, int kvHeads, int headDim, int[] chunks)
    {
        Assert.Equal(T, chunks.Sum());
        var p = Problem.Create(batch, T, heads, kvHeads, headDim, seed: 11 + T);
        using var cpu = new CpuBackend(2);
        int qw = heads * headDim, kvw = kvHeads * headDim;
        var output = new float[batch * T * qw];
        using var kCache = cpu.Allocate(DType.F32, batch, T, kvw);
        using var vCache = cpu.Allocate(DType.F32, batch, T, kvw);
        int start = 0;
        foreach (int n in chunks)
        {
            float[] Slice(float[] all, int width)
            {
                var part = new float[batch * n * width];
                for (int b = 0; b < batch; b++)
                    Array.Copy(all, ((long)b * T + start) * width, part, (long)b * n * width, (long)n * width);
                return part;
            }
            using var q = cpu.Allocate(DType.F32, batch * n, qw);
            using var k = cpu.Allocate(DType.F32, batch * n, kvw);
            using var v = cpu.Allocate(DType.F32, batch * n, kvw);
            using var o = cpu.Allocate(DType.F32, batch * n, qw);
            cpu.Upload(Slice(p.Q, qw), q);
            cpu.Upload(Slice(p.K, kvw), k);
            cpu.Upload(Slice(p.V, kvw), v);
            cpu.Attention(q, k, v, kCache, vCache, batch, n, start, heads, kvHeads, headDim, p.Scale, o);
            var part = new float[o.ElementCount];
            cpu.Download(o, part);
            for (int b = 0; b < batch; b++)
                Array.Copy(part, (long)b * n * qw, output, ((long)b * T + start) * qw, (long)n * qw);
            start += n;
        }
        using var scope = NewDisposeScope();
        AssertClose("o", Reference.Compute(p).O, output, ForwardBound);
    }

    [Fact]
    public void ResultsDoNotDependOnTheThreadCount()
    {
        var p = Problem.Create(2, 100, 4, 2, 64, seed: 3);
        using var one = new CpuBackend(1);
        using var two = new CpuBackend(2);
        using var three = new CpuBackend(3);
        var a = p.Run(one);
        foreach (var other in new[] { p.Run(two), p.Run(three) })
        {
            Assert.Equal(a.O, other.O);
            Assert.Equal(a.Lse, other.Lse);
            Assert.Equal(a.Dq, other.Dq);
            Assert.Equal(a.Dk, other.Dk);
            Assert.Equal(a.Dv, other.Dv);
        }
    }

    /// <summary>softmax(q·kᵀ·scale + causal mask)·v and its gradients for the loss Σ dO ⊙ o, by TorchSharp in float64.</summary>
    static class Reference
    {
        public sealed record Result(double[] O, double[] Lse, double[] Dq, double[] Dk, double[] Dv);

        public static Result Compute(Problem p)
        {
            int batch = p.Batch, T = p.T, heads = p.Heads, kvHeads = p.KvHeads, headDim = p.HeadDim, group = heads / kvHeads;
            var q = tensor(p.Q.Select(x => (double)x).ToArray(), float64).reshape(batch, T, heads, headDim).transpose(1, 2).requires_grad_(true);
            var k = tensor(p.K.Select(x => (double)x).ToArray(), float64).reshape(batch, T, kvHeads, headDim).transpose(1, 2).requires_grad_(true);
            var v = tensor(p.V.Select(x => (double)x).ToArray(), float64).reshape(batch, T, kvHeads, headDim).transpose(1, 2).requires_grad_(true);
            var kx = k.repeat_interleave(group, dim: 1);
            var vx = v.repeat_interleave(group, dim: 1);
            var mask = ones(T, T, dtype: ScalarType.Bool).triu(1);
            var scores = matmul(q, kx.transpose(2, 3)).mul(p.Scale).masked_fill(mask, double.NegativeInfinity);
            var lse = scores.logsumexp(-1);                                        // [B, heads, T]
            var o = matmul(scores.softmax(-1), vx);                                 // [B, heads, T, d]
            var dO = tensor(p.DOut.Select(x => (double)x).ToArray(), float64).reshape(batch, T, heads, headDim).transpose(1, 2);
            (o * dO).sum().backward();
            static double[] Rows(TorchTensor t) => t.transpose(1, 2).contiguous().data<double>().ToArray(); // back to [B·T, heads·d]
            return new Result(Rows(o.detach()), lse.transpose(1, 2).contiguous().data<double>().ToArray(), Rows(q.grad!), Rows(k.grad!), Rows(v.grad!));
        }
    }

    static void AssertClose(string what, double[] want, float[] got, double bound, double floor = 0)
    {
        Assert.Equal(want.Length, got.Length);
        double diff = 0, norm = 0;
        for (int i = 0; i < want.Length; i++)
        {
            Assert.True(float.IsFinite(got[i]), $"{what}[{i}] = {got[i]}");
            diff += (got[i] - want[i]) * (got[i] - want[i]);
            norm += want[i] * want[i];
        }
        double relative = Math.Sqrt(diff) / Math.Max(Math.Sqrt(norm), floor);
        Assert.True(relative <= bound, $"{what}: ‖ours − torch‖/‖torch‖ = {relative:E2} > {bound:E0}");
    }

    sealed record Outputs(float[] O, float[] Lse, float[] Dq, float[] Dk, float[] Dv);

    sealed record Problem(int Batch, int T, int Heads, int KvHeads, int HeadDim, float[] Q, float[] K, float[] V, float[] DOut)
    {
        public float Scale => 1f / MathF.Sqrt(HeadDim);

        public static Problem Create(int batch, int T, int heads, int kvHeads, int headDim, int seed)
        {
            var r = new Random(seed);
            float[] Values(int n, float spread) => Enumerable.Range(0, n).Select(_ => (float)((r.NextDouble() * 2 - 1) * spread)).ToArray();
            int rows = batch * T;
            // q and k of spread 2 give scores of a few units after scaling: softmax rows that are neither flat nor one-hot.
            return new Problem(batch, T, heads, kvHeads, headDim, Values(rows * heads * headDim, 2f), Values(rows * kvHeads * headDim, 2f),
                Values(rows * kvHeads * headDim, 1f), Values(rows * heads * headDim, 1f));
        }

        public Outputs Run(CpuBackend b)
        {
            int rows = Batch * T;
            BackendTensor Up(float[] values, int cols)
            {
                var t = b.Allocate(DType.F32, rows, cols);
                b.Upload(values, t);
                return t;
            }
            using var q = Up(Q, Heads * HeadDim);
            using var k = Up(K, KvHeads * HeadDim);
            using var v = Up(V, KvHeads * HeadDim);
            using var dOut = Up(DOut, Heads * HeadDim);
            using var o = b.Allocate(DType.F32, rows, Heads * HeadDim);
            using var lse = b.Allocate(DType.F32, rows, Heads);
            using var dq = b.Allocate(DType.F32, rows, Heads * HeadDim);
            using var dk = b.Allocate(DType.F32, rows, KvHeads * HeadDim);
            using var dv = b.Allocate(DType.F32, rows, KvHeads * HeadDim);
            b.AttentionForward(q, k, v, Batch, T, Heads, KvHeads, HeadDim, Scale, o, lse);
            b.AttentionBackward(q, k, v, o, dOut, lse, Batch, T, Heads, KvHeads, HeadDim, Scale, dq, dk, dv);
            float[] Read(BackendTensor t)
            {
                var values = new float[t.ElementCount];
                b.Download(t, values);
                return values;
            }
            return new Outputs(Read(o), Read(lse), Read(dq), Read(dk), Read(dv));
        }
    }
}
