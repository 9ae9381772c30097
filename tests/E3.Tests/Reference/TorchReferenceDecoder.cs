using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace E3.Tests.Reference;

/// <summary>
/// The parity oracle: Hugging Face transformers' Qwen3/Llama/Qwen2 causal-LM forward written with TorchSharp ops only,
/// plus E3's layer gate. With gate m_l, layer l's output is h + m_l·(layer(h) − h): m_l = 0 skips the layer (identity),
/// m_l = 1 is exactly the transformers layer. Positions are 0..T−1 and attention is causal (no padding).
/// </summary>
/// <remarks>
/// Float32 and BFloat16 follow transformers' dtype handling (RMSNorm and softmax in float32, results cast back).
/// Float64 is the high-precision oracle: weights are upcast and everything, norms and softmax included, runs in float64,
/// where transformers would drop to float32 inside RMSNorm. In every dtype the RoPE angles are transformers' float32
/// angles (see <see cref="RotaryTable"/>); only their cos/sin are taken in float64 for the oracle.
/// </remarks>
public static class TorchReferenceDecoder
{
    /// <summary>Logits [T, V] for one sequence; the caller owns (disposes) the result.</summary>
    /// <param name="checkpoint">Weights and config.</param>
    /// <param name="tokens">Token ids, each in [0, vocab_size).</param>
    /// <param name="gates">One gate per layer; null means all ones (plain transformers).</param>
    /// <param name="dtype">Float32, Float64 or BFloat16.</param>
    public static Tensor Forward(ReferenceCheckpoint checkpoint, long[] tokens, float[]? gates = null, ScalarType dtype = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        var batch = new long[1, tokens.Length];
        for (int t = 0; t < tokens.Length; t++)
        {
            batch[0, t] = tokens[t];
        }

        using var scope = torch.NewDisposeScope();
        return Forward(checkpoint, batch, gates, dtype).squeeze(0).MoveToOuterDisposeScope();
    }

    /// <summary>Logits [B, T, V] for B equal-length sequences; the caller owns (disposes) the result.</summary>
    /// <param name="checkpoint">Weights and config.</param>
    /// <param name="tokens">Token ids [B, T], each in [0, vocab_size).</param>
    /// <param name="gates">One gate per layer; null means all ones (plain transformers).</param>
    /// <param name="dtype">Float32, Float64 or BFloat16.</param>
    public static Tensor Forward(ReferenceCheckpoint checkpoint, long[,] tokens, float[]? gates = null, ScalarType dtype = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(tokens);
        var config = checkpoint.Config;
        var gateValues = CheckGates(config, gates);
        CheckTokens(config, tokens);
        if (dtype is not (ScalarType.Float32 or ScalarType.Float64 or ScalarType.BFloat16))
        {
            throw new ArgumentException($"The reference computes in Float32, Float64 or BFloat16, not {dtype}.", nameof(dtype));
        }

        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var pass = new ForwardPass(checkpoint, dtype, tokens.GetLength(1));
        var hidden = Embed(pass, config, tokens);
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            hidden = pass.GatedLayer(layer, hidden, gateValues[layer]);
        }

        var normed = pass.RmsNorm(hidden, "model.norm.weight");
        string head = config.TieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";
        return F.linear(normed, pass.Weight(head)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The residual stream of the ungated model: L + 1 tensors [B, T, hidden], entry l the input of layer l and entry L
    /// the last layer's output before the final norm (transformers' output_hidden_states, except that transformers
    /// replaces the last entry by its normed value). The caller owns (disposes) the tensors.
    /// </summary>
    /// <param name="checkpoint">Weights and config.</param>
    /// <param name="tokens">Token ids [B, T], each in [0, vocab_size).</param>
    /// <param name="dtype">Float32, Float64 or BFloat16.</param>
    public static Tensor[] HiddenStates(ReferenceCheckpoint checkpoint, long[,] tokens, ScalarType dtype = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(tokens);
        var config = checkpoint.Config;
        CheckTokens(config, tokens);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var pass = new ForwardPass(checkpoint, dtype, tokens.GetLength(1));
        var states = new Tensor[config.NumHiddenLayers + 1];
        states[0] = Embed(pass, config, tokens);
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            states[layer + 1] = pass.GatedLayer(layer, states[layer], 1f);
        }

        foreach (var state in states)
        {
            state.MoveToOuterDisposeScope();
        }

        return states;
    }

    private static Tensor Embed(ForwardPass pass, ReferenceConfig config, long[,] tokens)
    {
        var flat = new long[tokens.Length];
        Buffer.BlockCopy(tokens, 0, flat, 0, flat.Length * sizeof(long));
        var ids = torch.tensor(flat, dtype: ScalarType.Int64);
        return pass.Weight("model.embed_tokens.weight").index_select(0, ids)
            .reshape(tokens.GetLength(0), tokens.GetLength(1), config.HiddenSize);
    }

    /// <summary>
    /// Logits [B, T, V] from given input embeddings [B, T, hidden] under per-layer gates given as a tensor [layers], with
    /// autograd enabled, so gradients reach the embeddings, the gates and every weight marked requires_grad. Every layer
    /// is computed, gate 0 included (output = h + m·(layer(h) − h)), so a dropped layer's gate still gets a gradient.
    /// Call it inside the caller's dispose scope; intermediates belong to that scope.
    /// </summary>
    /// <param name="checkpoint">Weights and config; its dtype is the compute dtype.</param>
    /// <param name="embeddings">Input hidden states [B, T, hidden] in the checkpoint's dtype.</param>
    /// <param name="gates">One gate per layer, [layers], in the checkpoint's dtype.</param>
    public static Tensor ForwardFromEmbeddings(ReferenceCheckpoint checkpoint, Tensor embeddings, Tensor gates)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(embeddings);
        ArgumentNullException.ThrowIfNull(gates);
        var config = checkpoint.Config;
        if (gates.shape.Length != 1 || gates.shape[0] != config.NumHiddenLayers)
        {
            throw new ArgumentException($"gates has shape [{string.Join(", ", gates.shape)}]; the model has {config.NumHiddenLayers} layers.", nameof(gates));
        }

        if (embeddings.shape.Length != 3 || embeddings.shape[2] != config.HiddenSize)
        {
            throw new ArgumentException($"embeddings has shape [{string.Join(", ", embeddings.shape)}]; expected [B, T, {config.HiddenSize}].", nameof(embeddings));
        }

        var pass = new ForwardPass(checkpoint, checkpoint.DType, embeddings.shape[1]);
        var hidden = embeddings;
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            hidden = pass.GatedLayer(layer, hidden, gates[layer]);
        }

        var normed = pass.RmsNorm(hidden, "model.norm.weight");
        string head = config.TieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";
        return F.linear(normed, pass.Weight(head));
    }

    private static float[] CheckGates(ReferenceConfig config, float[]? gates)
    {
        if (gates is null)
        {
            return Enumerable.Repeat(1f, config.NumHiddenLayers).ToArray();
        }

        if (gates.Length != config.NumHiddenLayers)
        {
            throw new ArgumentException($"gates has {gates.Length} values; the model has {config.NumHiddenLayers} layers.", nameof(gates));
        }

        int bad = Array.FindIndex(gates, g => !float.IsFinite(g));
        if (bad >= 0)
        {
            throw new ArgumentException($"gates[{bad}] is {gates[bad]}; gates must be finite.", nameof(gates));
        }

        return gates;
    }

    private static void CheckTokens(ReferenceConfig config, long[,] tokens)
    {
        if (tokens.GetLength(0) == 0 || tokens.GetLength(1) == 0)
        {
            throw new ArgumentException($"tokens is [{tokens.GetLength(0)}, {tokens.GetLength(1)}]; it needs at least one token per sequence.", nameof(tokens));
        }

        for (int b = 0; b < tokens.GetLength(0); b++)
        {
            for (int t = 0; t < tokens.GetLength(1); t++)
            {
                if (tokens[b, t] < 0 || tokens[b, t] >= config.VocabSize)
                {
                    throw new ArgumentException($"tokens[{b}, {t}] is {tokens[b, t]}, outside the vocabulary [0, {config.VocabSize}).", nameof(tokens));
                }
            }
        }
    }

    /// <summary>Per-call state: weights in the compute dtype, the RoPE table and the causal mask for T positions.</summary>
    private sealed class ForwardPass
    {
        private readonly ReferenceCheckpoint _checkpoint;
        private readonly ReferenceConfig _config;
        private readonly ScalarType _dtype;
        // RMSNorm and softmax run in float32 for float32/bf16 (as transformers) and in float64 for the float64 oracle.
        private readonly ScalarType _accumulate;
        private readonly Tensor _cos;
        private readonly Tensor _sin;
        private readonly Tensor _future;

        public ForwardPass(ReferenceCheckpoint checkpoint, ScalarType dtype, long positions)
        {
            _checkpoint = checkpoint;
            _config = checkpoint.Config;
            _dtype = dtype;
            _accumulate = dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
            // [T, D] broadcast over batch and heads of [B, heads, T, D].
            (_cos, _sin) = RotaryTable.Build(positions, _config.HeadDim, _config.RopeTheta, dtype);
            _future = torch.ones(positions, positions, dtype: ScalarType.Bool).triu(1);
        }

        /// <summary>A weight in the compute dtype: the stored tensor itself when dtypes match, else a scoped copy.</summary>
        public Tensor Weight(string name)
        {
            var stored = _checkpoint.Weight(name);
            return stored.dtype == _dtype ? stored : stored.to(_dtype);
        }

        private Tensor? OptionalWeight(string name)
        {
            var stored = _checkpoint.OptionalWeight(name);
            return stored is null || stored.dtype == _dtype ? stored : stored.to(_dtype);
        }

        public Tensor GatedLayer(int layer, Tensor hidden, float gate)
        {
            if (gate == 0f)
            {
                return hidden;
            }

            using var scope = torch.NewDisposeScope();
            var attended = hidden + Attention(layer, RmsNorm(hidden, ReferenceLayout.Layer(layer, "input_layernorm.weight")));
            var output = attended + Mlp(layer, RmsNorm(attended, ReferenceLayout.Layer(layer, "post_attention_layernorm.weight")));
            // Gate 1 returns the layer output itself, so it is bit-identical to transformers rather than h + (out − h).
            using var m = gate.ToScalar();
            var gated = gate == 1f ? output : hidden + (output - hidden).mul(m);
            return gated.MoveToOuterDisposeScope();
        }

        /// <summary>h + m·(layer(h) − h) with a tensor gate, always computing the layer (autograd path).</summary>
        public Tensor GatedLayer(int layer, Tensor hidden, Tensor gate)
        {
            var attended = hidden + Attention(layer, RmsNorm(hidden, ReferenceLayout.Layer(layer, "input_layernorm.weight")));
            var output = attended + Mlp(layer, RmsNorm(attended, ReferenceLayout.Layer(layer, "post_attention_layernorm.weight")));
            return hidden + (output - hidden) * gate;
        }

        /// <summary>transformers' RMSNorm: weight * (x * rsqrt(mean(x²) + eps)).to(input dtype), over the last dim.</summary>
        public Tensor RmsNorm(Tensor x, string weightName)
        {
            var wide = x.dtype == _accumulate ? x : x.to(_accumulate);
            // Scalars are created and disposed explicitly: TorchSharp leaves an operator's implicit Scalar to the
            // finalizer, which can free it while libtorch still reads it ("Unknown scalar type", seen under GC load).
            using var eps = _config.RmsNormEps.ToScalar();
            var variance = wide.square().mean([-1L], keepdim: true);
            var normalized = wide * torch.rsqrt(variance.add(eps));
            return Weight(weightName) * normalized.to(_dtype);
        }

        private Tensor Project(Tensor x, int layer, string projection) =>
            F.linear(x, Weight(ReferenceLayout.Layer(layer, $"{projection}.weight")), OptionalWeight(ReferenceLayout.Layer(layer, $"{projection}.bias")));

        private Tensor Attention(int layer, Tensor x)
        {
            long batch = x.shape[0], positions = x.shape[1];
            int headDim = _config.HeadDim;
            var query = Project(x, layer, "self_attn.q_proj").view(batch, positions, _config.NumAttentionHeads, headDim);
            var key = Project(x, layer, "self_attn.k_proj").view(batch, positions, _config.NumKeyValueHeads, headDim);
            var value = Project(x, layer, "self_attn.v_proj").view(batch, positions, _config.NumKeyValueHeads, headDim);
            if (_config.HasQkNorm)
            {
                // Qwen3 normalises each head over head_dim before RoPE.
                query = RmsNorm(query, ReferenceLayout.Layer(layer, "self_attn.q_norm.weight"));
                key = RmsNorm(key, ReferenceLayout.Layer(layer, "self_attn.k_norm.weight"));
            }

            query = Rotate(query.transpose(1, 2));
            key = Rotate(key.transpose(1, 2));
            value = value.transpose(1, 2);

            // repeat_kv: query head h reads key/value head h / (heads / kv_heads).
            long groups = _config.NumAttentionHeads / _config.NumKeyValueHeads;
            key = key.repeat_interleave(groups, dim: 1);
            value = value.repeat_interleave(groups, dim: 1);

            using var scale = Math.Pow(headDim, -0.5).ToScalar();
            var scores = torch.matmul(query, key.transpose(2, 3)).mul(scale);
            scores = scores.masked_fill(_future, double.NegativeInfinity);
            var probabilities = F.softmax(scores, -1, _accumulate).to(_dtype);
            var context = torch.matmul(probabilities, value).transpose(1, 2).reshape(batch, positions, -1);
            return Project(context, layer, "self_attn.o_proj");
        }

        /// <summary>apply_rotary_pos_emb: x·cos + rotate_half(x)·sin, rotate_half(x) = cat(−x2, x1).</summary>
        private Tensor Rotate(Tensor x)
        {
            long half = _config.HeadDim / 2;
            var first = x.narrow(-1, 0, half);
            var second = x.narrow(-1, half, half);
            var rotated = torch.cat([-second, first], dim: -1);
            return x * _cos + rotated * _sin;
        }

        private Tensor Mlp(int layer, Tensor x)
        {
            var gate = F.silu(Project(x, layer, "mlp.gate_proj"));
            var up = Project(x, layer, "mlp.up_proj");
            return Project(gate * up, layer, "mlp.down_proj");
        }
    }
}
