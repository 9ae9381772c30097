using E3.Pruning.Distillation;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace E3.Tests.Distillation;

/// <summary>The chunked LM-head pass against TorchSharp autograd through hidden·Wᵀ in float64, and its memory bound.</summary>
public sealed class EntropyKdLmHeadTests
{
    [Theory]
    [InlineData(37, 1_000_000)] // several rows per chunk, the last chunk partial
    [InlineData(37, 1)]         // a budget below one row still runs, one row at a time
    [InlineData(37, 1L << 40)]  // everything in one chunk
    public void ChunkedMatchesAutogradThroughTheHead(int rows, long budget)
    {
        const int hiddenSize = 48, vocab = 3001;
        var options = new KdOptions { Temperature = 2, KdFraction = 0.75, Direction = KlDirection.Forward };
        var hidden = KdTestData.Logits(rows * hiddenSize, 30, 1.0);
        var head = KdTestData.Logits(vocab * hiddenSize, 31, 0.3);
        var teacher = KdTestData.Logits(rows * vocab, 32);
        var labels = KdTestData.Labels(rows, vocab, 33, 6);

        double wantLoss;
        float[] wantDHidden, wantDHead;
        using (NewDisposeScope())
        {
            var h = tensor(hidden, [rows, hiddenSize]).to(ScalarType.Float64).requires_grad_(true);
            var w = tensor(head, [vocab, hiddenSize]).to(ScalarType.Float64).requires_grad_(true);
            var loss = TorchKdReference.DenseLoss(h.matmul(w.t()), teacher, vocab, labels, options);
            loss.backward();
            wantLoss = loss.item<double>();
            wantDHidden = h.grad!.to(ScalarType.Float32).data<float>().ToArray();
            wantDHead = w.grad!.to(ScalarType.Float32).data<float>().ToArray();
        }

        var dHidden = new float[hidden.Length];
        var dHead = new float[head.Length];
        var got = EntropyKdLmHead.Compute(hidden, hiddenSize, head, vocab, new DenseTeacher(teacher, rows, vocab), labels, options, dHidden, dHead, budget);

        // Beyond the loss's own 1e-5, the fp32 GEMMs add ~sqrt(H)·ε relative error to the logits and
        // ~sqrt(V)·ε ≈ 3e-6 to the gradients' dot products; 2e-5 covers both.
        Assert.True(KdTestData.RelativeError(got.Loss.Loss, wantLoss) <= 2e-5, $"{got.Loss.Loss} vs {wantLoss}");
        Assert.True(KdTestData.RelativeError(dHidden, wantDHidden) <= 2e-5, $"dHidden {KdTestData.RelativeError(dHidden, wantDHidden)}");
        Assert.True(KdTestData.RelativeError(dHead, wantDHead) <= 2e-5, $"dHead {KdTestData.RelativeError(dHead, wantDHead)}");
        long rowBytes = vocab * sizeof(float);
        Assert.Equal(Math.Clamp(budget / rowBytes, 1, rows), got.ChunkRows);
        Assert.Equal(got.ChunkRows * rowBytes, got.ChunkBytes);
    }

    [Fact]
    public void FrozenHeadGivesTheSameHiddenGradient()
    {
        const int rows = 9, hiddenSize = 16, vocab = 257;
        var hidden = KdTestData.Logits(rows * hiddenSize, 34, 1.0);
        var head = KdTestData.Logits(vocab * hiddenSize, 35, 0.3);
        var teacher = new DenseTeacher(KdTestData.Logits(rows * vocab, 36), rows, vocab);
        var trained = new float[hidden.Length];
        var frozen = new float[hidden.Length];
        var a = EntropyKdLmHead.Compute(hidden, hiddenSize, head, vocab, teacher, [], new KdOptions(), trained, new float[head.Length], 4 * vocab * 4);
        var b = EntropyKdLmHead.Compute(hidden, hiddenSize, head, vocab, teacher, [], new KdOptions(), frozen, [], 4 * vocab * 4);
        Assert.Equal(a.Loss, b.Loss);
        Assert.Equal(trained, frozen);
    }
}
