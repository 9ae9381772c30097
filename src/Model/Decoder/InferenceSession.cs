using E3.Backends;
using E3.Backends.Numerics;

namespace E3.Model.Decoder;

/// <summary>
/// Incremental decoding state for a batch of equal-length sequences: one KV cache per kept layer (a skipped
/// layer has none), activation buffers reused between calls, and the current position.
/// </summary>
public sealed class InferenceSession : IDisposable
{
    readonly DecoderModel _model;
    readonly IBackend _b;
    readonly Tensor?[] _kCache, _vCache;
    Activations? _act;
    HeadBuffers? _head;
    float[]? _observed;
    bool _ended;

    internal InferenceSession(DecoderModel model, LayerMask mask, int batch, int capacity)
    {
        var c = model.Config;
        if (mask.Count != c.NumLayers) throw new ArgumentException($"mask has {mask.Count} gates but the model has {c.NumLayers} layers", nameof(mask));
        if (batch <= 0) throw new ArgumentOutOfRangeException(nameof(batch), $"batch {batch} must be positive");
        if (capacity <= 0) throw new ArgumentOutOfRangeException(nameof(capacity), $"capacity {capacity} must be positive");
        _model = model;
        _b = model.Backend;
        Mask = mask;
        Batch = batch;
        Capacity = capacity;
        _kCache = new Tensor?[c.NumLayers];
        _vCache = new Tensor?[c.NumLayers];
        int kvw = c.NumKvHeads * c.HeadDim;
        for (int l = 0; l < c.NumLayers; l++)
        {
            if (mask.IsSkipped(l)) continue;
            _kCache[l] = _b.Allocate(_b.ActivationType, batch, capacity, kvw);
            _vCache[l] = _b.Allocate(_b.ActivationType, batch, capacity, kvw);
        }
    }

    /// <summary>The layers this session runs; a skipped layer has no KV cache.</summary>
    public LayerMask Mask { get; }
    /// <summary>Number of sequences B decoded together; every call's tokens are laid out [B, T].</summary>
    public int Batch { get; }
    /// <summary>Most positions per sequence the KV caches hold.</summary>
    public int Capacity { get; }
    /// <summary>Positions already in the cache.</summary>
    public int Position { get; private set; }

    /// <summary>
    /// Runs the next <c>tokens.Length / Batch</c> positions of every sequence (tokens laid out [B, T]) and
    /// returns logits as <paramref name="mode"/> asks: [B·T, V] for <see cref="LogitsMode.All"/>, [B, V] for
    /// <see cref="LogitsMode.Last"/>, none for <see cref="LogitsMode.None"/> (only filling the caches).
    /// </summary>
    public float[] Forward(ReadOnlySpan<int> tokens, LogitsMode mode = LogitsMode.All) => Forward(tokens, mode, null);

    /// <summary><see cref="Forward(ReadOnlySpan{int}, LogitsMode)"/>, and <paramref name="observer"/>, when given, sees every layer's input (calibration).</summary>
    internal float[] Forward(ReadOnlySpan<int> tokens, LogitsMode mode, IHiddenStateObserver? observer)
    {
        var logits = Run(tokens, mode, observer);
        if (logits is null) return [];
        var result = new float[logits.ElementCount];
        _b.Download(logits, result);
        return result;
    }

    /// <summary>
    /// Runs the next positions like <see cref="Forward(ReadOnlySpan{int}, LogitsMode)"/> with <see cref="LogitsMode.All"/> and returns the logits
    /// [B·T, V] where they were computed, without downloading them. The tensor belongs to the session: the next call
    /// overwrites it and <see cref="Dispose"/> frees it.
    /// </summary>
    internal Tensor ForwardLogits(ReadOnlySpan<int> tokens) => Run(tokens, LogitsMode.All)!;

    /// <summary>
    /// Ends the session, keeping only the logits its last call computed: the caller owns (and disposes) them, and the KV
    /// caches and activation buffers are freed now. A distillation teacher needs its logits for a whole training step
    /// after its forward, and its caches and activations (over 10 GB for Qwen3-32B at 32K tokens) for none of it. The
    /// session cannot run again.
    /// </summary>
    internal Tensor TakeLogits()
    {
        ObjectDisposedException.ThrowIf(_ended, this);
        if (_head is null) throw new InvalidOperationException("no logits to take: the session has not computed any");
        var logits = _head.ReleaseAllButLogits();
        _head = null;
        Dispose();
        return logits;
    }

    /// <summary>
    /// Runs the next positions like <see cref="Forward(ReadOnlySpan{int}, LogitsMode)"/> and returns, per sequence, the index of the largest logit
    /// of its last position (ties to the lowest index). A backend with <see cref="IArgMaxBackend"/> reduces on the
    /// device and transfers one int per sequence; any other downloads the logits and uses <see cref="GreedyGenerator.ArgMax"/>.
    /// </summary>
    public int[] ForwardArgMax(ReadOnlySpan<int> tokens)
    {
        var logits = Run(tokens, LogitsMode.Last)!;
        if (_b is not IArgMaxBackend device) return OnHost(logits, (row, _) => GreedyGenerator.ArgMax(row));
        var ids = new int[Batch];
        device.ArgMaxRows(logits, ids);
        return ids;
    }

    /// <summary>
    /// Runs the next positions like <see cref="Forward(ReadOnlySpan{int}, LogitsMode)"/> and draws, per sequence, the next
    /// token from its last position's logits as <paramref name="options"/> says. Sequence b's draw at position p uses the
    /// noise of (seed, p, b), so a run is reproducible. A backend that can draws on the device and transfers one int per
    /// sequence; any other downloads the logits and draws on the host by the same rule.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An option out of range, naming it; nothing has run.</exception>
    public int[] ForwardSample(ReadOnlySpan<int> tokens, SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.At(0).Validate();
        var logits = Run(tokens, LogitsMode.Last)!;
        var settings = options.At(Position - 1);
        if (_b is not ISamplingBackend device) return OnHost(logits, (row, b) => TokenSampler.Sample(row, settings, b));
        var ids = new int[Batch];
        device.SampleRows(logits, settings, ids);
        return ids;
    }

    delegate int RowChoice(ReadOnlySpan<float> row, int sequence);

    /// <summary>Downloads the logits of each sequence's last position ([B, V]) and chooses its token on the host.</summary>
    int[] OnHost(Tensor logits, RowChoice choose)
    {
        var values = new float[logits.ElementCount];
        _b.Download(logits, values);
        int vocab = logits.Columns;
        var ids = new int[Batch];
        for (int b = 0; b < Batch; b++) ids[b] = choose(values.AsSpan(b * vocab, vocab), b);
        return ids;
    }

    /// <summary>The layers, then the LM head as <paramref name="mode"/> asks: the logits tensor, or null for <see cref="LogitsMode.None"/>.</summary>
    Tensor? Run(ReadOnlySpan<int> tokens, LogitsMode mode, IHiddenStateObserver? observer = null)
    {
        ObjectDisposedException.ThrowIf(_ended, this);
        var c = _model.Config;
        if (tokens.Length == 0 || tokens.Length % Batch != 0)
            throw new ArgumentException($"{tokens.Length} tokens cannot be split into {Batch} equal sequences", nameof(tokens));
        int T = tokens.Length / Batch;
        if (Position + T > Capacity)
            throw new InvalidOperationException($"positions {Position}..{Position + T - 1} exceed the session capacity {Capacity}");
        _model.ValidateTokens(tokens);

        int rows = tokens.Length;
        var a = ActivationsFor(rows);
        var w = _model.Weights;
        _b.Embedding(w.Embedding, tokens, a.H);

        float scale = 1f / MathF.Sqrt(c.HeadDim);
        int outRows = mode == LogitsMode.Last ? Batch : rows;
        var head = mode == LogitsMode.None ? null : HeadFor(outRows);
        // The last kept layer's end can compute the final norm too, unless only some rows go to the head.
        bool fuseFinalNorm = head != null && outRows == rows;
        bool inputNormed = false, finalNormed = false; // whether a fused layer end already wrote X, or head.Normed
        for (int l = 0; l < c.NumLayers; l++)
        {
            if (observer != null) Observe(observer, l, a.H);
            float gate = Mask[l];
            if (gate == 0f) continue;
            _model.CountExecution(l);
            var lw = w.Layers[l];
            if (!inputNormed) _b.RmsNorm(a.H, lw.InputNorm, c.RmsNormEps, a.X);
            _b.MatMul(a.X, lw.Q, lw.QBias, a.Q);
            _b.MatMul(a.X, lw.K, lw.KBias, a.K);
            _b.MatMul(a.X, lw.V, lw.VBias, a.V);
            _b.QkNormRope(a.Q, a.K, c.NumHeads, c.NumKvHeads, c.HeadDim, lw.QNorm, lw.KNorm, c.RmsNormEps, c.RopeTheta, T, Position);
            _b.Attention(a.Q, a.K, a.V, _kCache[l]!, _vCache[l]!, Batch, T, Position, c.NumHeads, c.NumKvHeads, c.HeadDim, scale, a.Attn);
            _b.MatMul(a.Attn, lw.O, lw.OBias, a.O);
            _b.AddRmsNorm(a.H, a.O, a.A, lw.PostAttentionNorm, c.RmsNormEps, a.X);
            _b.MatMul(a.X, lw.Gate, null, a.Gate);
            _b.MatMul(a.X, lw.Up, null, a.Up);
            _b.SwiGlu(a.Gate, a.Up, a.Gate);
            _b.MatMul(a.Gate, lw.Down, null, a.O);
            // The layer's end reads h once and also normalises it for whatever reads it next: the next kept layer's
            // input norm, or the final norm.
            int next = NextKept(l + 1);
            inputNormed = next < c.NumLayers;
            if (inputNormed) _b.GatedResidualRmsNorm(a.H, a.A, a.O, gate, w.Layers[next].InputNorm, c.RmsNormEps, a.X);
            else if (fuseFinalNorm)
            {
                _b.GatedResidualRmsNorm(a.H, a.A, a.O, gate, w.FinalNorm, c.RmsNormEps, head!.Normed);
                finalNormed = true;
            }
            else _b.GatedResidual(a.H, a.A, a.O, gate);
        }
        if (observer != null) Observe(observer, c.NumLayers, a.H);
        Position += T;
        if (head is null) return null;

        if (!finalNormed)
        {
            Tensor hidden = a.H;
            if (outRows != rows)
            {
                var rowsWanted = new int[Batch];
                for (int b = 0; b < Batch; b++) rowsWanted[b] = b * T + T - 1;
                _b.GatherRows(a.H, rowsWanted, head.Last);
                hidden = head.Last;
            }
            _b.RmsNorm(hidden, w.FinalNorm, c.RmsNormEps, head.Normed);
        }
        _b.MatMul(head.Normed, w.LmHead, null, head.Logits);
        return head.Logits;
    }

    /// <summary>The first layer at or after <paramref name="from"/> that the mask keeps; the layer count when none is.</summary>
    int NextKept(int from)
    {
        while (from < Mask.Count && Mask[from] == 0f) from++;
        return from;
    }

    void Observe(IHiddenStateObserver observer, int index, Tensor hidden)
    {
        int length = checked((int)hidden.ElementCount);
        if (_observed == null || _observed.Length != length) _observed = new float[length];
        _b.Download(hidden, _observed);
        observer.Observe(index, _observed);
    }

    /// <summary>
    /// Makes the buffers a call of <paramref name="tokensPerSequence"/> positions per sequence with logits as
    /// <paramref name="mode"/> asks will use, which the first call of each size would otherwise allocate, so that the
    /// call itself allocates nothing: a timed call then measures the model, not the allocator.
    /// </summary>
    public void Prepare(int tokensPerSequence, LogitsMode mode = LogitsMode.All)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tokensPerSequence);
        int rows = checked(tokensPerSequence * Batch);
        ActivationsFor(rows);
        if (mode != LogitsMode.None) HeadFor(mode == LogitsMode.Last ? Batch : rows);
    }

    /// <summary>Forgets every cached position (the caches are overwritten by the next call).</summary>
    public void Reset() => Position = 0;

    // Kept between calls, so a call of the same size (every decode step) allocates nothing.
    Activations ActivationsFor(int rows) => _act is { Rows: var r } && r == rows ? _act : ReplaceActivations(rows);

    HeadBuffers HeadFor(int rows) => _head is { Rows: var r } && r == rows ? _head : ReplaceHead(rows);

    HeadBuffers ReplaceHead(int rows)
    {
        _head?.Dispose();
        _head = new HeadBuffers(_b, _model.Config, rows);
        return _head;
    }

    Activations ReplaceActivations(int rows)
    {
        _act?.Dispose();
        _act = new Activations(_b, _model.Config, rows);
        return _act;
    }

    /// <summary>Frees the KV caches and activation buffers; the session cannot run again.</summary>
    public void Dispose()
    {
        _ended = true;
        _act?.Dispose();
        _head?.Dispose();
        foreach (var t in _kCache) t?.Dispose();
        foreach (var t in _vCache) t?.Dispose();
    }

    /// <summary>Final norm and LM-head buffers for a given number of output rows.</summary>
    sealed class HeadBuffers(IBackend b, ModelConfig c, int rows) : IDisposable
    {
        public readonly int Rows = rows;
        public readonly Tensor Last = b.Allocate(b.ActivationType, rows, c.HiddenSize);
        public readonly Tensor Normed = b.Allocate(b.ActivationType, rows, c.HiddenSize);
        public readonly Tensor Logits = b.Allocate(b.ActivationType, rows, c.VocabSize);

        /// <summary>Frees the other buffers and hands over the logits.</summary>
        public Tensor ReleaseAllButLogits()
        {
            Last.Dispose();
            Normed.Dispose();
            return Logits;
        }

        public void Dispose() => ReleaseAllButLogits().Dispose();
    }

    /// <summary>Per-call activation buffers for a given number of token rows.</summary>
    sealed class Activations : IDisposable
    {
        public readonly int Rows;
        public readonly Tensor H, X, Q, K, V, Attn, O, A, Gate, Up;

        public Activations(IBackend b, ModelConfig c, int rows)
        {
            Rows = rows;
            var dt = b.ActivationType;
            int qw = c.NumHeads * c.HeadDim, kvw = c.NumKvHeads * c.HeadDim;
            H = b.Allocate(dt, rows, c.HiddenSize);
            X = b.Allocate(dt, rows, c.HiddenSize);
            Q = b.Allocate(dt, rows, qw);
            K = b.Allocate(dt, rows, kvw);
            V = b.Allocate(dt, rows, kvw);
            Attn = b.Allocate(dt, rows, qw);
            O = b.Allocate(dt, rows, c.HiddenSize);
            A = b.Allocate(dt, rows, c.HiddenSize);
            Gate = b.Allocate(dt, rows, c.IntermediateSize);
            Up = b.Allocate(dt, rows, c.IntermediateSize);
        }

        public void Dispose()
        {
            foreach (var t in new[] { H, X, Q, K, V, Attn, O, A, Gate, Up }) t.Dispose();
        }
    }
}
