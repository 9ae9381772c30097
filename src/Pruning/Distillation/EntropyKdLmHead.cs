using E3.Backends.Cpu;

namespace E3.Pruning.Distillation;

/// <summary>The loss and what the chunked pass used.</summary>
/// <param name="Loss">The loss, as <see cref="EntropyKdLoss"/> computes it.</param>
/// <param name="ChunkRows">Tokens per chunk.</param>
/// <param name="ChunkBytes">Size of the one logits chunk buffer: the peak extra memory of the pass.</param>
internal readonly record struct LmHeadKdResult(KdLoss Loss, int ChunkRows, long ChunkBytes);

/// <summary>
/// The distillation loss fused with the LM head, on the CPU. From hidden states [T, H] and W_lm [V, H], tokens
/// are processed in chunks: logits = hidden·Wᵀ into one chunk buffer, loss and gradient in place, then
/// dHidden = dLogits·W and, when the head is trained, dW += dLogitsᵀ·hidden. The [T, V] logits never exist.
/// </summary>
internal static class EntropyKdLmHead
{
    /// <summary>
    /// Runs the teacher pass, then the chunks. <paramref name="dHidden"/> [T, H] is overwritten;
    /// <paramref name="dLmHead"/> [V, H] is overwritten with the head's gradient, or left out (empty) for a frozen
    /// head. The chunk holds as many rows of V fp32 logits as <paramref name="memoryBudgetBytes"/> allows (at least one).
    /// </summary>
    public static unsafe LmHeadKdResult Compute(ReadOnlySpan<float> hidden, int hiddenSize, ReadOnlySpan<float> lmHead, int studentVocab,
        KdTeacher teacher, ReadOnlySpan<int> labels, KdOptions options, Span<float> dHidden, Span<float> dLmHead, long memoryBudgetBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(hiddenSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(memoryBudgetBytes);
        var plan = KdPlan.Create(teacher, labels, studentVocab, options);
        int rows = plan.Rows;
        if (hidden.Length != (long)rows * hiddenSize) throw new ArgumentException($"hidden: {hidden.Length} values do not form [{rows}, {hiddenSize}]");
        if (lmHead.Length != (long)studentVocab * hiddenSize) throw new ArgumentException($"lmHead: {lmHead.Length} values do not form [{studentVocab}, {hiddenSize}]");
        if (dHidden.Length != hidden.Length) throw new ArgumentException($"dHidden: {dHidden.Length} values, expected {hidden.Length}");
        bool trainHead = !dLmHead.IsEmpty;
        if (trainHead && dLmHead.Length != lmHead.Length) throw new ArgumentException($"dLmHead: {dLmHead.Length} values, expected {lmHead.Length}");

        long rowBytes = (long)studentVocab * sizeof(float);
        int chunkRows = (int)Math.Clamp(memoryBudgetBytes / rowBytes, 1, Math.Max(1, rows));
        var chunk = new float[(long)chunkRows * studentVocab];
        if (trainHead) dLmHead.Clear();
        double kd = 0, ce = 0;
        fixed (float* h = hidden, w = lmHead, dh = dHidden, dw = dLmHead, logits = chunk)
        {
            for (int first = 0; first < rows; first += chunkRows)
            {
                int n = Math.Min(chunkRows, rows - first);
                float* hChunk = h + (long)first * hiddenSize;
                CpuGemm.MatMulTransB(hChunk, n, hiddenSize, w, studentVocab, logits, null, accumulate: false);
                var part = EntropyKdLoss.Run(plan, chunk.AsSpan(0, n * studentVocab), first, n);
                kd += part.Distillation;
                ce += part.CrossEntropy;
                CpuGemm.MatMul(logits, n, studentVocab, w, hiddenSize, dh + (long)first * hiddenSize, accumulate: false);
                if (trainHead) CpuGemm.MatMulTransA(hChunk, n, hiddenSize, logits, studentVocab, dw, accumulate: true);
            }
        }
        double lambda = options.KdFraction;
        return new LmHeadKdResult(new KdLoss(lambda * kd + (1 - lambda) * ce, kd, ce, plan.ValidCount), chunkRows, chunk.LongLength * sizeof(float));
    }
}
