using E3.Backends;

namespace E3.Model.Training;

/// <summary>fp32 [rows, width] buffers allocated together; the byte count the planner uses comes from the same widths.</summary>
internal static class RowBuffers
{
    public static Tensor[] Allocate(IBackend b, int rows, int[] widths) => widths.Select(w => b.Allocate(DType.F32, rows, w)).ToArray();

    public static long Bytes(long rows, int[] widths) => checked(4 * rows * widths.Sum(w => (long)w));
}

/// <summary>
/// What one layer's backward needs from its forward (everything but the layer input, which is kept separately):
/// normed inputs, q/k before and after norm+RoPE, v, attention output and its per-row log-sum-exp, the attention
/// residual a, the MLP pre-activations and output. Never a [T×T] tensor.
/// </summary>
internal sealed class LayerTape : IDisposable
{
    readonly Tensor[] _all;
    public readonly Tensor X1, QRaw, KRaw, Q, K, V, Attn, Lse, A, X2, GatePre, UpPre, Act, Mlp;

    static int[] Widths(ModelConfig c)
    {
        int qw = c.NumHeads * c.HeadDim, kvw = c.NumKvHeads * c.HeadDim, h = c.HiddenSize, i = c.IntermediateSize;
        return [h, qw, kvw, qw, kvw, kvw, qw, c.NumHeads, h, h, i, i, i, h];
    }

    public LayerTape(IBackend b, ModelConfig c, int rows)
    {
        _all = RowBuffers.Allocate(b, rows, Widths(c));
        (X1, QRaw, KRaw, Q, K, V, Attn) = (_all[0], _all[1], _all[2], _all[3], _all[4], _all[5], _all[6]);
        (Lse, A, X2, GatePre, UpPre, Act, Mlp) = (_all[7], _all[8], _all[9], _all[10], _all[11], _all[12], _all[13]);
    }

    /// <summary>Bytes one tape holds: the planner's per-layer activation figure.</summary>
    public static long Bytes(ModelConfig c, long rows) => RowBuffers.Bytes(rows, Widths(c));

    public void Dispose()
    {
        foreach (var t in _all) t.Dispose();
    }
}

/// <summary>Scratch gradients for one layer's backward, shared by all layers.</summary>
internal sealed class LayerGradScratch : IDisposable
{
    readonly Tensor[] _all;
    public readonly Tensor DA, DX, DAttn, DQ, DK, DV, DAct, DGate, DUp;

    static int[] Widths(ModelConfig c)
    {
        int qw = c.NumHeads * c.HeadDim, kvw = c.NumKvHeads * c.HeadDim, h = c.HiddenSize, i = c.IntermediateSize;
        return [h, h, qw, qw, kvw, kvw, i, i, i];
    }

    public LayerGradScratch(IBackend b, ModelConfig c, int rows)
    {
        _all = RowBuffers.Allocate(b, rows, Widths(c));
        (DA, DX, DAttn, DQ, DK, DV, DAct, DGate, DUp) = (_all[0], _all[1], _all[2], _all[3], _all[4], _all[5], _all[6], _all[7], _all[8]);
    }

    /// <summary>Bytes of the scratch: the planner's backward working set.</summary>
    public static long Bytes(ModelConfig c, long rows) => RowBuffers.Bytes(rows, Widths(c));

    public void Dispose()
    {
        foreach (var t in _all) t.Dispose();
    }
}
