using E3.Tests.Reference;
using TorchSharp;

namespace E3.Tests.ReferenceTests;

/// <summary>
/// A second, deliberately plain implementation of the gated decoder: double-precision loops over arrays, no TorchSharp
/// ops, written from the transformers equations rather than from <see cref="TorchReferenceDecoder"/>. It checks the
/// oracle itself. It only borrows the weight values (as double arrays) and the parsed config.
/// </summary>
internal sealed class ScalarDecoder
{
    private readonly ReferenceConfig _config;
    private readonly Func<string, double[]?> _weight;

    public ScalarDecoder(ReferenceCheckpoint checkpoint)
    {
        _config = checkpoint.Config;
        var cache = new Dictionary<string, double[]?>();
        _weight = name =>
        {
            if (!cache.TryGetValue(name, out var values))
            {
                using var wide = checkpoint.OptionalWeight(name)?.to(torch.ScalarType.Float64);
                values = wide?.data<double>().ToArray();
                cache[name] = values;
            }

            return values;
        };
    }

    /// <summary>Logits [T][V]. With <paramref name="ungated"/> the layer output replaces h directly (plain transformers).</summary>
    public double[][] Forward(long[] tokens, float[] gates, bool ungated = false)
    {
        int width = _config.HiddenSize;
        var hidden = Embed(tokens);
        for (int layer = 0; layer < _config.NumHiddenLayers; layer++)
        {
            double gate = gates[layer];
            if (!ungated && gate == 0)
            {
                continue;
            }

            var output = Layer(layer, hidden);
            for (int t = 0; t < hidden.Length; t++)
            {
                for (int i = 0; i < width; i++)
                {
                    hidden[t][i] = ungated ? output[t][i] : hidden[t][i] + gate * (output[t][i] - hidden[t][i]);
                }
            }
        }

        return Logits(hidden);
    }

    /// <summary>lm_head(final_norm(h)) for each position.</summary>
    public double[][] Logits(double[][] hidden)
    {
        string head = _config.TieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";
        return hidden.Select(h => MatVec(Required(head), null, Norm(h, Required("model.norm.weight")))).ToArray();
    }

    /// <summary>The embedding rows of <paramref name="tokens"/>.</summary>
    public double[][] Embed(long[] tokens)
    {
        var embedding = Required("model.embed_tokens.weight");
        return tokens.Select(token => embedding.AsSpan((int)token * _config.HiddenSize, _config.HiddenSize).ToArray()).ToArray();
    }

    private double[][] Layer(int layer, double[][] hidden)
    {
        string P(string suffix) => ReferenceLayout.Layer(layer, suffix);
        int positions = hidden.Length;
        int headDim = _config.HeadDim;
        int groups = _config.NumAttentionHeads / _config.NumKeyValueHeads;
        var queries = new double[positions][];
        var keys = new double[positions][];
        var values = new double[positions][];
        for (int t = 0; t < positions; t++)
        {
            var x = Norm(hidden[t], Required(P("input_layernorm.weight")));
            queries[t] = MatVec(Required(P("self_attn.q_proj.weight")), _weight(P("self_attn.q_proj.bias")), x);
            keys[t] = MatVec(Required(P("self_attn.k_proj.weight")), _weight(P("self_attn.k_proj.bias")), x);
            values[t] = MatVec(Required(P("self_attn.v_proj.weight")), _weight(P("self_attn.v_proj.bias")), x);
            HeadNormAndRope(queries[t], t, _weight(P("self_attn.q_norm.weight")));
            HeadNormAndRope(keys[t], t, _weight(P("self_attn.k_norm.weight")));
        }

        var result = new double[positions][];
        double scale = 1.0 / Math.Sqrt(headDim);
        for (int t = 0; t < positions; t++)
        {
            var context = new double[_config.NumAttentionHeads * headDim];
            for (int head = 0; head < _config.NumAttentionHeads; head++)
            {
                int kvOffset = head / groups * headDim;
                var scores = new double[t + 1];
                for (int s = 0; s <= t; s++)
                {
                    double dot = 0;
                    for (int d = 0; d < headDim; d++)
                    {
                        dot += queries[t][head * headDim + d] * keys[s][kvOffset + d];
                    }

                    scores[s] = dot * scale;
                }

                double max = scores.Max();
                double total = scores.Sum(score => Math.Exp(score - max));
                for (int s = 0; s <= t; s++)
                {
                    double p = Math.Exp(scores[s] - max) / total;
                    for (int d = 0; d < headDim; d++)
                    {
                        context[head * headDim + d] += p * values[s][kvOffset + d];
                    }
                }
            }

            var attended = Add(hidden[t], MatVec(Required(P("self_attn.o_proj.weight")), _weight(P("self_attn.o_proj.bias")), context));
            var y = Norm(attended, Required(P("post_attention_layernorm.weight")));
            var gate = MatVec(Required(P("mlp.gate_proj.weight")), null, y);
            var up = MatVec(Required(P("mlp.up_proj.weight")), null, y);
            var product = gate.Select((g, i) => g / (1 + Math.Exp(-g)) * up[i]).ToArray();
            result[t] = Add(attended, MatVec(Required(P("mlp.down_proj.weight")), null, product));
        }

        return result;
    }

    /// <summary>Optional per-head RMSNorm (Qwen3), then RoPE on each head in place.</summary>
    private void HeadNormAndRope(double[] heads, int position, double[]? normScale)
    {
        int headDim = _config.HeadDim;
        int half = headDim / 2;
        for (int offset = 0; offset < heads.Length; offset += headDim)
        {
            var head = heads.AsSpan(offset, headDim);
            if (normScale is not null)
            {
                Norm(head.ToArray(), normScale).CopyTo(head);
            }

            for (int i = 0; i < half; i++)
            {
                // transformers' float32 angle: float32 exponent 2i/D, float32 pow and reciprocal, float32 position·inv_freq.
                // MathF.Pow (libm powf) and libtorch's vectorised float32 pow can differ in the last bit for some
                // (theta, D); for the head_dim 8 models validated here they agree on every frequency.
                float exponent = (float)(2 * i) / headDim;
                float inverseFrequency = 1f / MathF.Pow((float)_config.RopeTheta, exponent);
                float angle = position * inverseFrequency;
                double cos = Math.Cos(angle);
                double sin = Math.Sin(angle);
                double x1 = head[i], x2 = head[i + half];
                head[i] = x1 * cos - x2 * sin;
                head[i + half] = x2 * cos + x1 * sin;
            }
        }
    }

    private double[] Norm(double[] x, double[] scale)
    {
        double meanSquare = x.Sum(v => v * v) / x.Length;
        double inverse = 1.0 / Math.Sqrt(meanSquare + _config.RmsNormEps);
        return x.Select((v, i) => scale[i] * (v * inverse)).ToArray();
    }

    /// <summary>y = W x + b for a row-major [out, in] W.</summary>
    private static double[] MatVec(double[] weight, double[]? bias, double[] x)
    {
        int rows = weight.Length / x.Length;
        var y = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double sum = bias?[r] ?? 0;
            for (int c = 0; c < x.Length; c++)
            {
                sum += weight[r * x.Length + c] * x[c];
            }

            y[r] = sum;
        }

        return y;
    }

    private static double[] Add(double[] a, double[] b) => a.Select((v, i) => v + b[i]).ToArray();

    private double[] Required(string name) => _weight(name) ?? throw new InvalidOperationException($"{name} is missing");
}
