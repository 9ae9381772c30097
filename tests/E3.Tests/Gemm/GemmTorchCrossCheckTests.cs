using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace E3.Tests.Gemm;

/// <summary>Our kernels against libtorch on the same data: an implementation we did not write.</summary>
public class GemmTorchCrossCheckTests
{
    [Theory]
    [InlineData(GemmVariant.TransBF32, 100, 257, 129)]
    [InlineData(GemmVariant.TransBBf16, 100, 257, 129)]
    [InlineData(GemmVariant.TransBBf16, 3, 1000, 31)]
    [InlineData(GemmVariant.MatMulF32, 100, 257, 129)]
    [InlineData(GemmVariant.MatMulBf16, 64, 513, 17)]
    [InlineData(GemmVariant.TransA, 257, 100, 129)]
    public void AgreesWithTorch(GemmVariant variant, int m, int k, int n)
    {
        var problem = new GemmProblem(variant, m, k, n, accumulate: false, withBias: true, seed: 99);
        var ours = problem.RunOurs();
        float[] theirs = TorchResult(problem);
        var (_, magnitude) = problem.Reference();
        Assert.Equal(ours.Length, theirs.Length);
        for (int i = 0; i < ours.Length; i++)
        {
            // Both results lie within γ_(inner+4)·S of the exact value (see GemmProblem.Tolerance), so they
            // lie within twice that of each other, whatever order libtorch sums in.
            double bound = 2 * problem.Tolerance(magnitude[i]);
            double difference = Math.Abs((double)ours[i] - theirs[i]);
            if (!(difference <= bound))
                Assert.Fail($"{problem}: element {i} ours {ours[i]} torch {theirs[i]}, |diff| {difference:E3} > {bound:E3}");
        }
    }

    private static float[] TorchResult(GemmProblem p)
    {
        using var scope = torch.NewDisposeScope();
        Tensor x = torch.tensor(p.X, [p.M, p.K]);
        Tensor result = p.Variant switch
        {
            // The bf16 variants' W already holds the decoded bf16 values, so fp32 torch sees the same numbers.
            GemmVariant.TransBF32 or GemmVariant.TransBBf16 => nn.functional.linear(
                x, torch.tensor(p.W, [p.N, p.K]), p.Bias is null ? null : torch.tensor(p.Bias, [p.N])),
            GemmVariant.MatMulF32 or GemmVariant.MatMulBf16 => torch.matmul(x, torch.tensor(p.W, [p.K, p.N])),
            _ => torch.matmul(torch.tensor(p.W, [p.M, p.N]).t(), x),
        };
        return result.contiguous().data<float>().ToArray();
    }
}
