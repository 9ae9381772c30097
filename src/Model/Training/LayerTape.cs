using E3.Backends;

namespace E3.Model.Training;

/// <summary>
/// What one layer's backward needs from its forward (everything but the layer input, which is kept separately):
/// normed inputs, q/k before and after norm+RoPE, v, attention output and its per-row log-sum-exp, the attention
/// residual a, the MLP pre-activations and output. Never a [T×T] tensor.
/// </summary>
internal sealed class LayerTape : IDisposable
{
    public readonly Tensor X1, QRaw, KRaw, Q, K, V, Attn, Lse, A, X2, GatePre, UpPre, Act, Mlp;

    public LayerTape(IBackend b, ModelConfig c, int rows)
    {
        var dt = DType.F32;
        int qw = c.NumHeads * c.HeadDim, kvw = c.NumKvHeads * c.HeadDim, h = c.HiddenSize, i = c.IntermediateSize;
        X1 = b.Allocate(dt, rows, h);
        QRaw = b.Allocate(dt, rows, qw);
        KRaw = b.Allocate(dt, rows, kvw);
        Q = b.Allocate(dt, rows, qw);
        K = b.Allocate(dt, rows, kvw);
        V = b.Allocate(dt, rows, kvw);
        Attn = b.Allocate(dt, rows, qw);
        Lse = b.Allocate(dt, rows, c.NumHeads);
        A = b.Allocate(dt, rows, h);
        X2 = b.Allocate(dt, rows, h);
        GatePre = b.Allocate(dt, rows, i);
        UpPre = b.Allocate(dt, rows, i);
        Act = b.Allocate(dt, rows, i);
        Mlp = b.Allocate(dt, rows, h);
    }

    /// <summary>Bytes one tape holds: the planner's per-layer activation figure.</summary>
    public static long Bytes(ModelConfig c, long rows)
    {
        long qw = (long)c.NumHeads * c.HeadDim, kvw = (long)c.NumKvHeads * c.HeadDim;
        return 4 * rows * (4L * c.HiddenSize + 3 * qw + 3 * kvw + c.NumHeads + 3L * c.IntermediateSize);
    }

    public void Dispose()
    {
        foreach (var t in new[] { X1, QRaw, KRaw, Q, K, V, Attn, Lse, A, X2, GatePre, UpPre, Act, Mlp }) t.Dispose();
    }
}

/// <summary>Scratch gradients for one layer's backward, shared by all layers.</summary>
internal sealed class LayerGradScratch : IDisposable
{
    public readonly Tensor DA, DX, DAttn, DQ, DK, DV, DAct, DGate, DUp;

    public LayerGradScratch(IBackend b, ModelConfig c, int rows)
    {
        var dt = DType.F32;
        int qw = c.NumHeads * c.HeadDim, kvw = c.NumKvHeads * c.HeadDim, h = c.HiddenSize, i = c.IntermediateSize;
        DA = b.Allocate(dt, rows, h);
        DX = b.Allocate(dt, rows, h);
        DAttn = b.Allocate(dt, rows, qw);
        DQ = b.Allocate(dt, rows, qw);
        DK = b.Allocate(dt, rows, kvw);
        DV = b.Allocate(dt, rows, kvw);
        DAct = b.Allocate(dt, rows, i);
        DGate = b.Allocate(dt, rows, i);
        DUp = b.Allocate(dt, rows, i);
    }

    /// <summary>Bytes of the scratch: the planner's backward working set.</summary>
    public static long Bytes(ModelConfig c, long rows)
    {
        long qw = (long)c.NumHeads * c.HeadDim, kvw = (long)c.NumKvHeads * c.HeadDim;
        return 4 * rows * (2L * c.HiddenSize + 2 * qw + 2 * kvw + 3L * c.IntermediateSize);
    }

    public void Dispose()
    {
        foreach (var t in new[] { DA, DX, DAttn, DQ, DK, DV, DAct, DGate, DUp }) t.Dispose();
    }
}
