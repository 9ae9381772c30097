using Xunit;

namespace E3.Tests.Gemm;

/// <summary>Every variant against the double-precision reference, over all shape combinations of the brief.</summary>
public class GemmAccuracyTests
{
    private static readonly int[] Sizes = [1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 64, 100, 129, 257];

    // The portable kernel runs the same code shape as the AVX2 one; a thinner grid keeps the suite short
    // while still covering single rows/columns, every edge remainder of 6 and 16, and multi-block K.
    private static readonly int[] PortableSizes = [1, 5, 8, 17, 100, 257];

    public static TheoryData<GemmVariant> Variants => new(Enum.GetValues<GemmVariant>());

    [Theory]
    [MemberData(nameof(Variants))]
    public void MatchesDoubleReferenceOnAllShapeCombinations(GemmVariant variant) =>
        CheckGrid(variant, Sizes, portable: null);

    [Theory]
    [MemberData(nameof(Variants))]
    public void PortableKernelMatchesDoubleReference(GemmVariant variant) =>
        CheckGrid(variant, PortableSizes, portable: true);

    [Theory]
    [MemberData(nameof(Variants))]
    public void MatchesDoubleReferenceOnLargeShape(GemmVariant variant)
    {
        AssertWithinBound(new GemmProblem(variant, 384, 513, 1000, accumulate: true, withBias: true, seed: 7), portable: null);
        AssertWithinBound(new GemmProblem(variant, 384, 513, 1000, accumulate: false, withBias: false, seed: 8), portable: null);
    }

    /// <summary>
    /// Packed A is capped at 4 Mi floats, so more than ~4 Mi elements of the left operand are processed in
    /// row chunks (here 1000 GEMM rows x 4200 inner = 4.2 Mi, two chunks of 960 and 40 rows).
    /// </summary>
    [Theory]
    [MemberData(nameof(Variants))]
    public void TallLeftOperandIsProcessedInRowChunks(GemmVariant variant)
    {
        var problem = variant == GemmVariant.TransA
            ? new GemmProblem(variant, 4200, 20, 1000, accumulate: true, withBias: false, seed: 3)
            : new GemmProblem(variant, 1000, 4200, 20, accumulate: true, withBias: true, seed: 3);
        AssertWithinBound(problem, portable: null);
    }

    /// <summary>
    /// With small integers every partial sum is exact in fp32, so any order of summation must give the
    /// reference bit for bit: an indexing or packing slip cannot hide inside a rounding tolerance.
    /// </summary>
    [Theory]
    [MemberData(nameof(Variants))]
    public void IntegerDataIsExact(GemmVariant variant)
    {
        (int M, int K, int N)[] shapes = [(1, 1, 1), (3, 1000, 17), (8, 257, 129), (9, 31, 100), (384, 513, 1000)];
        foreach (var (m, k, n) in shapes)
            foreach (bool? portable in new bool?[] { null, true })
            {
                var problem = new GemmProblem(variant, m, k, n, accumulate: true, withBias: true, seed: m + k + n, integers: true);
                var ours = problem.RunOurs(portable);
                var (reference, _) = problem.Reference();
                for (int i = 0; i < ours.Length; i++)
                    if (ours[i] != reference[i])
                        Assert.Fail($"{problem} portable={portable}: element {i} is {ours[i]}, exact value {reference[i]}");
            }
    }

    private static void CheckGrid(GemmVariant variant, int[] sizes, bool? portable)
    {
        int index = 0;
        foreach (int m in sizes)
            foreach (int k in sizes)
                foreach (int n in sizes)
                {
                    // Rotate the flags across shapes so each combination meets every edge case without
                    // multiplying the run time by four.
                    bool accumulate = (index & 1) != 0, withBias = (index & 2) != 0;
                    AssertWithinBound(new GemmProblem(variant, m, k, n, accumulate, withBias, seed: index), portable);
                    index++;
                }
    }

    private static void AssertWithinBound(GemmProblem problem, bool? portable)
    {
        var ours = problem.RunOurs(portable);
        var (reference, magnitude) = problem.Reference();
        for (int i = 0; i < ours.Length; i++)
        {
            double error = Math.Abs(ours[i] - reference[i]);
            double bound = problem.Tolerance(magnitude[i]);
            if (!(error <= bound))
                Assert.Fail($"{problem} portable={portable}: element ({i / problem.OutCols},{i % problem.OutCols}) " +
                            $"is {ours[i]}, reference {reference[i]}, |error| {error:E3} > bound {bound:E3}");
        }
    }
}
