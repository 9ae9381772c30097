using E3.Backends;
using E3.Backends.Numerics;
using E3.Model.Decoder;

namespace E3.Pruning.Distillation;

/// <summary>The teacher side of the distillation loss: dense logits or sparse top-K log-probabilities.</summary>
internal abstract class KdTeacher
{
    private protected KdTeacher(int rows, int vocab)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocab);
        Rows = rows;
        Vocab = vocab;
    }

    /// <summary>T: tokens (rows).</summary>
    public int Rows { get; }

    /// <summary>The teacher's vocabulary width (columns of its logits, or the range of its top-K indices).</summary>
    public int Vocab { get; }
}

/// <summary>
/// Dense teacher logits z_t [T, V], fp32 or bf16 (raw bits). The arrays are referenced, not copied.
/// </summary>
internal sealed class DenseTeacher : KdTeacher
{
    private readonly ReadOnlyMemory<float> f32;
    private readonly ReadOnlyMemory<ushort> bf16;

    /// <summary>fp32 logits, row-major [rows, vocab].</summary>
    public DenseTeacher(ReadOnlyMemory<float> logits, int rows, int vocab) : base(rows, vocab)
    {
        CheckLength(logits.Length, rows, vocab);
        f32 = logits;
    }

    /// <summary>bf16 logits (raw bits), row-major [rows, vocab].</summary>
    public DenseTeacher(ReadOnlyMemory<ushort> logitsBf16, int rows, int vocab) : base(rows, vocab)
    {
        CheckLength(logitsBf16.Length, rows, vocab);
        bf16 = logitsBf16;
    }

    /// <summary>True when the logits are bf16.</summary>
    public bool IsBf16 => f32.IsEmpty && !bf16.IsEmpty;

    /// <summary>The fp32 logits (empty for a bf16 teacher).</summary>
    public ReadOnlyMemory<float> Float32 => f32;

    /// <summary>The bf16 logits (empty for an fp32 teacher).</summary>
    public ReadOnlyMemory<ushort> BFloat16Bits => bf16;

    /// <summary>
    /// Row <paramref name="row"/> as fp32: a view for an fp32 teacher, or widened into <paramref name="scratch"/>
    /// (at least <see cref="KdTeacher.Vocab"/> long) for bf16.
    /// </summary>
    internal ReadOnlySpan<float> Row(int row, Span<float> scratch)
    {
        if (!IsBf16) return f32.Span.Slice(row * Vocab, Vocab);
        BFloat16.ToSingle(bf16.Span.Slice(row * Vocab, Vocab), scratch);
        return scratch[..Vocab];
    }

    private static void CheckLength(int length, int rows, int vocab)
    {
        if ((long)rows * vocab != length)
            throw new ArgumentException($"dense teacher: {length} logits do not form [{rows}, {vocab}]");
    }
}

/// <summary>
/// Sparse teacher: for each token the indices of the teacher's K most likely tokens and their full-vocabulary
/// log-probabilities (at temperature 1), as stored by the teacher cache. The loss compares K+1 buckets: the K
/// tokens plus one tail bucket holding the remaining mass 1 − Σ top-K, on both the teacher and the student side.
/// </summary>
internal sealed class SparseTeacher : KdTeacher
{
    /// <summary>Indices [rows, k] and log-probabilities [rows, k] of a teacher with <paramref name="vocab"/> columns.</summary>
    public SparseTeacher(ReadOnlyMemory<int> indices, ReadOnlyMemory<float> logProbs, int rows, int k, int vocab) : base(rows, vocab)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(k);
        if (indices.Length != (long)rows * k)
            throw new ArgumentException($"sparse teacher: {indices.Length} indices do not form [{rows}, {k}]");
        if (logProbs.Length != (long)rows * k)
            throw new ArgumentException($"sparse teacher: {logProbs.Length} log-probabilities do not form [{rows}, {k}]");
        Indices = indices;
        LogProbs = logProbs;
        K = k;
    }

    /// <summary>K: entries per token.</summary>
    public int K { get; }

    /// <summary>Top-K indices, row-major [rows, K].</summary>
    public ReadOnlyMemory<int> Indices { get; }

    /// <summary>Full-vocabulary log-probabilities of those indices, row-major [rows, K].</summary>
    public ReadOnlyMemory<float> LogProbs { get; }
}

/// <summary>
/// Dense teacher logits [rows, vocab] left where a teacher model computed them (on a GPU, say), so that a loss fused
/// with the LM head on the same backend reads them there. Owns the logits (and nothing else of the forward that made
/// them); dispose it when the step is done.
/// </summary>
internal sealed class BackendDenseTeacher : KdTeacher, IDisposable
{

    /// <summary>Runs <paramref name="teacher"/> with every layer on <paramref name="inputs"/> ([batch, T]) and keeps its logits on its backend.</summary>
    public BackendDenseTeacher(DecoderModel teacher, ReadOnlySpan<int> inputs, int batch)
        : base(inputs.Length, teacher.Config.VocabSize)
    {
        Backend = teacher.Backend;
        using var session = teacher.StartSession(E3.Model.LayerMask.All(teacher.Config.NumLayers), batch, inputs.Length / batch);
        session.ForwardLogits(inputs);
        Logits = session.TakeLogits(); // the KV caches and activations go now, not after the student's step
    }

    private BackendDenseTeacher(IBackend backend, Tensor logits) : base(checked((int)logits.Rows), logits.Columns)
    {
        Backend = backend;
        Logits = logits;
    }

    /// <summary>
    /// A teacher of logits [rows, vocab] already on <paramref name="backend"/> (computed elsewhere, or uploaded for a
    /// check); it takes ownership of <paramref name="logits"/>.
    /// </summary>
    public static BackendDenseTeacher FromLogits(IBackend backend, Tensor logits)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(logits);
        if (logits.Rank != 2) throw new ArgumentException($"teacher logits must be [rows, vocab], not {logits}", nameof(logits));
        return new BackendDenseTeacher(backend, logits);
    }

    /// <summary>The backend the logits live on.</summary>
    public IBackend Backend { get; }

    /// <summary>The logits [rows, vocab], in the backend's activation dtype.</summary>
    public Tensor Logits { get; }

    /// <summary>The logits downloaded as a host <see cref="DenseTeacher"/>, for a loss computed on the host.</summary>
    public DenseTeacher ToHost()
    {
        var values = new float[Logits.ElementCount];
        Backend.Download(Logits, values);
        return new DenseTeacher(values, Rows, Vocab);
    }

    /// <summary>Frees the logits.</summary>
    public void Dispose() => Logits.Dispose();
}
