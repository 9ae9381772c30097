using E3.Backends;
using E3.Model.Decoder;

namespace E3.Model.Training;

/// <summary>Gradients of one backward call.</summary>
/// <param name="Gates">dL/dm_l per layer, summed in double; NaN for a layer with gate 0 that was not computed.</param>
/// <param name="InputEmbeddings">dL/d(embedding output) [B·T, hidden], row-major.</param>
internal sealed record DecoderGradients(double[] Gates, float[] InputEmbeddings);

/// <summary>
/// A training forward and backward through a gated decoder: h_{l+1} = h_l + m_l·(layer_l(h_l) − h_l) over [B, T]
/// tokens at positions 0..T−1 (no KV cache). The forward saves what the backward needs (or, with checkpointing, only
/// each layer's input); the backward takes dL/dlogits from any loss and returns the gate and input-embedding gradients
/// and, in <see cref="TrainingMode.Train"/>, accumulates fp32 weight gradients named as the HF tensors: of every tensor
/// <see cref="TrainingOptions.Parameters"/> calls trainable, so of the retained layers only when the options carry the
/// pruned model's mask.
/// </summary>
internal sealed class GatedDecoderTrainer : IDisposable
{
    readonly DecoderModel _model;
    readonly ITrainingBackend _b;
    readonly Dictionary<string, Tensor> _grads = new();
    Pass? _pass;

    /// <param name="model">Weights and config; its backend must implement <see cref="ITrainingBackend"/>.</param>
    /// <param name="options">Mode, checkpointing, dropped-layer policy and freeze patterns.</param>
    public GatedDecoderTrainer(DecoderModel model, TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        _model = model;
        _b = model.Backend as ITrainingBackend
            ?? throw new NotSupportedException($"backend '{model.Backend.Name}' has no backward pass (it does not implement ITrainingBackend)");
        // Every buffer below is fp32; a bf16 backend would otherwise fail at the first op, naming only a tensor shape.
        if (_b.ActivationType != DType.F32)
            throw new NotSupportedException($"training computes in fp32, but backend '{_b.Name}' keeps {_b.ActivationType} activations: open the device with ComputeDeviceOptions.Training (the CLI does this for search, train and distill)");
        Options = options;
        var filter = options.Parameters();
        filter.RequireLayers(model.Config);
        if (options.Mode == TrainingMode.Train)
        {
            foreach (var (name, shape) in WeightNames.Expected(model.Config))
                if (filter.IsTrainable(name)) _grads[name] = _b.Allocate(DType.F32, shape.Select(d => checked((int)d)).ToArray());
        }
    }

    /// <summary>How this trainer runs: mode, checkpointing, dropped-layer policy, freeze patterns and retained layers.</summary>
    public TrainingOptions Options { get; }

    /// <summary>fp32 weight gradients by HF tensor name, only for trainable tensors (empty when frozen). Owned by the trainer.</summary>
    public IReadOnlyDictionary<string, Tensor> WeightGradients => _grads;

    /// <summary>Zeroes every weight gradient (the backward accumulates into them).</summary>
    public void ZeroWeightGradients()
    {
        foreach (var g in _grads.Values) _b.Clear(g);
    }

    /// <summary>
    /// Runs the training forward on <paramref name="tokens"/> laid out [batch, T] under one gate per layer and returns
    /// the logits [B·T, V]; follow with <see cref="Backward"/> (or <see cref="BackwardFromHidden"/>).
    /// </summary>
    public float[] Forward(ReadOnlySpan<int> tokens, int batch, ReadOnlySpan<float> gates)
    {
        var p = RunToHidden(tokens, batch, gates);
        var logits = p.EnsureLogits(_b, _model.Config);
        _b.MatMul(p.Normed, _model.Weights.LmHead, null, logits);
        p.HasLogits = true;
        var result = new float[logits.ElementCount];
        _b.Download(logits, result);
        return result;
    }

    /// <summary>
    /// The training forward up to the final norm, for a loss fused with the LM head: no logits are formed, and no
    /// [B·T, V] buffer is allocated (for a 152K vocabulary that is 0.6 MB a token, twice over with its gradient).
    /// Follow with <see cref="NormedHidden"/> and <see cref="BackwardFromHidden"/>.
    /// </summary>
    public void ForwardHidden(ReadOnlySpan<int> tokens, int batch, ReadOnlySpan<float> gates) => RunToHidden(tokens, batch, gates);

    Pass RunToHidden(ReadOnlySpan<int> tokens, int batch, ReadOnlySpan<float> gates)
    {
        var c = _model.Config;
        if (batch <= 0 || tokens.Length == 0 || tokens.Length % batch != 0)
            throw new ArgumentException($"{tokens.Length} tokens cannot be split into {batch} equal sequences", nameof(tokens));
        if (gates.Length != c.NumLayers) throw new ArgumentException($"{gates.Length} gates given; the model has {c.NumLayers} layers", nameof(gates));
        for (int l = 0; l < gates.Length; l++)
        {
            if (!float.IsFinite(gates[l])) throw new ArgumentException($"gates[{l}] = {gates[l]} is not finite", nameof(gates));
            // A layer the pruned model dropped has no gradient buffers; letting it contribute would train around it silently.
            if (Options.Mode == TrainingMode.Train && Options.RetainedLayers is { } retained && retained.IsSkipped(l) && gates[l] != 0f)
                throw new ArgumentException($"gates[{l}] = {gates[l]}, but layer {l} is dropped by TrainingOptions.RetainedLayers ({retained})", nameof(gates));
        }
        _model.ValidateTokens(tokens);

        int rows = tokens.Length;
        if (_pass == null || _pass.Rows != rows)
        {
            _pass?.Dispose();
            _pass = new Pass(_b, c, rows, Options.Checkpointing);
        }
        var p = _pass;
        p.Tokens = tokens.ToArray();
        p.Gates = gates.ToArray();
        p.Batch = batch;
        p.Ready = true;
        p.HasLogits = false;
        var w = _model.Weights;
        _b.Embedding(w.Embedding, tokens, p.H);
        for (int l = 0; l < c.NumLayers; l++)
        {
            _b.Copy(p.H, p.Inputs[l]);
            if (!Computes(l, p.Gates[l])) continue;
            var tape = p.Tape(l);
            RunLayer(l, p.Inputs[l], tape, p.Tokens.Length / batch, batch);
            _b.GatedResidual(p.H, tape.A, tape.Mlp, p.Gates[l]);
        }
        _b.RmsNorm(p.H, w.FinalNorm, c.RmsNormEps, p.Normed);
        return p;
    }

    /// <summary>Backward from dL/dlogits [B·T, V] of the last <see cref="Forward"/>.</summary>
    public DecoderGradients Backward(ReadOnlySpan<float> dLogits)
    {
        var p = RequirePass();
        var c = _model.Config;
        var w = _model.Weights;
        if (!p.HasLogits)
            throw new InvalidOperationException("Backward takes dL/dlogits, but the last forward was ForwardHidden, which forms no logits: use BackwardFromHidden");
        long expected = (long)p.Rows * c.VocabSize;
        if (dLogits.Length != expected)
            throw new ArgumentException($"dLogits holds {dLogits.Length} values; the forward produced {expected} ([{p.Rows}, {c.VocabSize}])", nameof(dLogits));
        var dLogitsTensor = p.EnsureLogitGradient(_b, c);
        _b.Upload(dLogits, dLogitsTensor);
        _b.MatMulInputGrad(dLogitsTensor, w.LmHead, p.DNormed, false);
        string head = c.TieWordEmbeddings ? WeightNames.Embedding : WeightNames.LmHead;
        if (Grad(head) is { } dHead) _b.MatMulWeightGrad(p.Normed, dLogitsTensor, dHead, null);
        return BackwardFromNormed(p);
    }

    /// <summary>
    /// Backward from dL/d(final normed hidden) [B·T, hidden], the LM head's input, after <see cref="ForwardHidden"/> or
    /// <see cref="Forward"/>: for a loss fused with the LM head, which then owns the head's gradient.
    /// </summary>
    public DecoderGradients BackwardFromHidden(ReadOnlySpan<float> dNormedHidden)
    {
        var p = RequirePass();
        if (dNormedHidden.Length != p.Normed.ElementCount)
            throw new ArgumentException($"dNormedHidden holds {dNormedHidden.Length} values; expected {p.Normed.ElementCount}", nameof(dNormedHidden));
        _b.Upload(dNormedHidden, p.DNormed);
        return BackwardFromNormed(p);
    }

    /// <summary>
    /// The LM head's input [B·T, hidden] of the last forward and the buffer for its gradient, both on the backend: for a
    /// loss fused with the head that runs there (<see cref="IDistillationBackend"/>). Fill <c>Gradient</c> with
    /// dL/d(hidden), then call <see cref="BackwardFromHiddenGradient"/>. Both tensors belong to the trainer and are
    /// overwritten by the next forward.
    /// </summary>
    public (Tensor Hidden, Tensor Gradient) HeadInput()
    {
        var p = RequirePass();
        return (p.Normed, p.DNormed);
    }

    /// <summary>Backward from the gradient written into <see cref="HeadInput"/>'s <c>Gradient</c> tensor.</summary>
    public DecoderGradients BackwardFromHiddenGradient() => BackwardFromNormed(RequirePass());

    /// <summary>The final normed hidden states [B·T, hidden] of the last forward (the LM head's input).</summary>
    public float[] NormedHidden()
    {
        var p = RequirePass();
        var result = new float[p.Normed.ElementCount];
        _b.Download(p.Normed, result);
        return result;
    }

    DecoderGradients BackwardFromNormed(Pass p)
    {
        var c = _model.Config;
        var w = _model.Weights;
        int T = p.Tokens.Length / p.Batch;
        _b.RmsNormBackward(p.H, w.FinalNorm, c.RmsNormEps, p.DNormed, p.DH, false, Grad(WeightNames.FinalNorm));
        var gateGrads = new double[c.NumLayers];
        for (int l = c.NumLayers - 1; l >= 0; l--)
        {
            float gate = p.Gates[l];
            if (!Computes(l, gate)) { gateGrads[l] = double.NaN; continue; }
            var tape = p.Tape(l);
            if (Options.Checkpointing) RunLayer(l, p.Inputs[l], tape, T, p.Batch);
            var s = p.Scratch;
            gateGrads[l] = _b.GatedResidualBackward(p.Inputs[l], tape.A, tape.Mlp, gate, p.DH, p.DH, s.DA);
            // A gate of 0 passes dh through unchanged and sends nothing into the layer.
            if (gate != 0f) LayerBackward(l, p.Inputs[l], tape, s, p.DH, T, p.Batch);
        }
        if (Grad(WeightNames.Embedding) is { } dEmb) _b.EmbeddingBackward(p.Tokens, p.DH, dEmb);
        var dInput = new float[p.DH.ElementCount];
        _b.Download(p.DH, dInput);
        return new DecoderGradients(gateGrads, dInput);
    }

    bool Computes(int layer, float gate) => gate != 0f || Options.ComputeDroppedLayers;

    Pass RequirePass() => _pass is { Ready: true } p ? p : throw new InvalidOperationException("Backward called before Forward");

    Tensor? Grad(string name) => _grads.GetValueOrDefault(name);

    Tensor? LayerGrad(int layer, string suffix) => Grad(WeightNames.Layer(layer, suffix));

    /// <summary>One ungated layer on its input: fills the tape up to a = h + attn and mlp (the layer output is a + mlp).</summary>
    void RunLayer(int l, Tensor input, LayerTape t, int T, int batch)
    {
        var c = _model.Config;
        var lw = _model.Weights.Layers[l];
        _b.RmsNorm(input, lw.InputNorm, c.RmsNormEps, t.X1);
        _b.MatMul(t.X1, lw.Q, lw.QBias, t.QRaw);
        _b.MatMul(t.X1, lw.K, lw.KBias, t.KRaw);
        _b.MatMul(t.X1, lw.V, lw.VBias, t.V);
        _b.Copy(t.QRaw, t.Q);
        _b.Copy(t.KRaw, t.K);
        _b.HeadNormRope(t.Q, c.NumHeads, c.HeadDim, lw.QNorm, c.RmsNormEps, c.RopeTheta, T, 0);
        _b.HeadNormRope(t.K, c.NumKvHeads, c.HeadDim, lw.KNorm, c.RmsNormEps, c.RopeTheta, T, 0);
        _b.AttentionForward(t.Q, t.K, t.V, batch, T, c.NumHeads, c.NumKvHeads, c.HeadDim, Scale(c), t.Attn, t.Lse);
        _b.MatMul(t.Attn, lw.O, lw.OBias, t.Mlp);
        _b.AddRmsNorm(input, t.Mlp, t.A, lw.PostAttentionNorm, c.RmsNormEps, t.X2);
        _b.MatMul(t.X2, lw.Gate, null, t.GatePre);
        _b.MatMul(t.X2, lw.Up, null, t.UpPre);
        _b.SwiGlu(t.GatePre, t.UpPre, t.Act);
        _b.MatMul(t.Act, lw.Down, null, t.Mlp);
    }

    static float Scale(ModelConfig c) => 1f / MathF.Sqrt(c.HeadDim);

    /// <summary>
    /// Backward through the ungated layer: <paramref name="s"/>.DA holds dL/d(a + mlp) on entry; dL/dinput is added to
    /// <paramref name="dInput"/>; weight gradients accumulate for trainable tensors.
    /// </summary>
    void LayerBackward(int l, Tensor input, LayerTape t, LayerGradScratch s, Tensor dInput, int T, int batch)
    {
        var c = _model.Config;
        var lw = _model.Weights.Layers[l];
        // MLP: mlp = down(silu(gate(x2))·up(x2)), x2 = RmsNorm(a). DA is dL/dmlp here and becomes dL/da below.
        _b.MatMulInputGrad(s.DA, lw.Down, s.DAct, false);
        WeightGrad(t.Act, s.DA, l, WeightNames.DownProj, false);
        _b.SwiGluBackward(t.GatePre, t.UpPre, s.DAct, s.DGate, s.DUp);
        _b.MatMulInputGrad(s.DGate, lw.Gate, s.DX, false);
        _b.MatMulInputGrad(s.DUp, lw.Up, s.DX, true);
        WeightGrad(t.X2, s.DGate, l, WeightNames.GateProj, false);
        WeightGrad(t.X2, s.DUp, l, WeightNames.UpProj, false);
        _b.RmsNormBackward(t.A, lw.PostAttentionNorm, c.RmsNormEps, s.DX, s.DA, true, LayerGrad(l, WeightNames.PostAttentionNorm));

        // a = input + o_proj(attn): the residual passes DA to the input, and DA is dL/d(o_proj output).
        _b.AddInPlace(dInput, s.DA);
        _b.MatMulInputGrad(s.DA, lw.O, s.DAttn, false);
        WeightGrad(t.Attn, s.DA, l, WeightNames.OProj, c.OutputBias);
        _b.AttentionBackward(t.Q, t.K, t.V, t.Attn, s.DAttn, t.Lse, batch, T, c.NumHeads, c.NumKvHeads, c.HeadDim, Scale(c), s.DQ, s.DK, s.DV);
        _b.HeadNormRopeBackward(t.QRaw, c.NumHeads, c.HeadDim, lw.QNorm, c.RmsNormEps, c.RopeTheta, T, 0, s.DQ, LayerGrad(l, WeightNames.QNorm));
        _b.HeadNormRopeBackward(t.KRaw, c.NumKvHeads, c.HeadDim, lw.KNorm, c.RmsNormEps, c.RopeTheta, T, 0, s.DK, LayerGrad(l, WeightNames.KNorm));
        _b.MatMulInputGrad(s.DQ, lw.Q, s.DX, false);
        _b.MatMulInputGrad(s.DK, lw.K, s.DX, true);
        _b.MatMulInputGrad(s.DV, lw.V, s.DX, true);
        WeightGrad(t.X1, s.DQ, l, WeightNames.QProj, c.QkvBias);
        WeightGrad(t.X1, s.DK, l, WeightNames.KProj, c.QkvBias);
        WeightGrad(t.X1, s.DV, l, WeightNames.VProj, c.QkvBias);
        _b.RmsNormBackward(input, lw.InputNorm, c.RmsNormEps, s.DX, dInput, true, LayerGrad(l, WeightNames.InputNorm));
    }

    void WeightGrad(Tensor x, Tensor dy, int layer, string projection, bool hasBias)
    {
        var dw = LayerGrad(layer, projection + ".weight");
        var db = hasBias ? LayerGrad(layer, projection + ".bias") : null;
        if (dw != null) _b.MatMulWeightGrad(x, dy, dw, db);
        else if (db != null) BiasOnly(dy, db);
    }

    /// <summary>A trainable bias on a frozen weight: its gradient is the column sum of dy, computed into a zero scratch.</summary>
    void BiasOnly(Tensor dy, Tensor db)
    {
        using var zeroX = _b.Allocate(DType.F32, (int)dy.Rows, 1);
        using var scratch = _b.Allocate(DType.F32, dy.Columns, 1);
        _b.MatMulWeightGrad(zeroX, dy, scratch, db);
    }

    public void Dispose()
    {
        _pass?.Dispose();
        foreach (var g in _grads.Values) g.Dispose();
        _grads.Clear();
    }

    /// <summary>
    /// Buffers for one row count: saved layer inputs, tapes (one per layer, or one shared when checkpointing), head and
    /// gradients. The [rows, V] logits and their gradient are made on first use, so a fused-head loss never has them.
    /// </summary>
    sealed class Pass : IDisposable
    {
        readonly LayerTape[] _tapes;

        public Pass(IBackend b, ModelConfig c, int rows, bool checkpointing)
        {
            Rows = rows;
            H = b.Allocate(DType.F32, rows, c.HiddenSize);
            Inputs = Enumerable.Range(0, c.NumLayers).Select(_ => b.Allocate(DType.F32, rows, c.HiddenSize)).ToArray();
            _tapes = Enumerable.Range(0, checkpointing ? 1 : c.NumLayers).Select(_ => new LayerTape(b, c, rows)).ToArray();
            Normed = b.Allocate(DType.F32, rows, c.HiddenSize);
            DNormed = b.Allocate(DType.F32, rows, c.HiddenSize);
            DH = b.Allocate(DType.F32, rows, c.HiddenSize);
            Scratch = new LayerGradScratch(b, c, rows);
        }

        public int Rows { get; }
        public int Batch;
        public int[] Tokens = [];
        public float[] Gates = [];
        public bool Ready;
        /// <summary>Whether the last forward formed logits (Forward) or stopped at the normed hidden (ForwardHidden).</summary>
        public bool HasLogits;
        public readonly Tensor H, Normed, DNormed, DH;
        public readonly Tensor[] Inputs;
        public readonly LayerGradScratch Scratch;
        Tensor? _logits, _dLogits;

        public Tensor EnsureLogits(IBackend b, ModelConfig c) => _logits ??= b.Allocate(DType.F32, Rows, c.VocabSize);

        public Tensor EnsureLogitGradient(IBackend b, ModelConfig c) => _dLogits ??= b.Allocate(DType.F32, Rows, c.VocabSize);

        public LayerTape Tape(int layer) => _tapes[_tapes.Length == 1 ? 0 : layer];

        public void Dispose()
        {
            foreach (var t in _tapes) t.Dispose();
            foreach (var t in Inputs) t.Dispose();
            foreach (var t in new[] { H, Normed, DNormed, DH }) t.Dispose();
            _logits?.Dispose();
            _dLogits?.Dispose();
            Scratch.Dispose();
        }
    }
}
