using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using E3.Interop.Kernels;

namespace E3.Pruning.Masking;

/// <summary>
/// The per-sample work of <see cref="CpuGumbelTopK"/>, on rows padded to a multiple of 8 lanes so every loop is
/// whole <see cref="Vector256{T}"/>s. Padding lanes hold score -inf and gradient 0: their p is exactly 0, so
/// they change neither a softmax, nor a dot product, nor any result. One instance per worker, reused per sample.
/// </summary>
internal sealed class GumbelTopKRow
{
    /// <summary>The floor of 1 - p before the log (E3_GUMBEL_ONE_MINUS_P_FLOOR in the kernel).</summary>
    internal const float OneMinusPFloor = 1e-20f;

    private readonly GumbelTopKSpec spec;
    private readonly int padded;
    private readonly double[] noise, scores64;
    private readonly int[] order;
    private readonly float[] scores, shifted, soft, grad, gradScores, scratch, probs;

    public GumbelTopKRow(in GumbelTopKSpec spec, bool relaxed)
    {
        this.spec = spec;
        padded = (spec.Layers + 7) & ~7;
        noise = new double[spec.Layers];
        scores64 = new double[spec.Layers];
        order = new int[spec.Layers];
        scores = new float[padded];
        shifted = new float[padded];
        soft = new float[padded];
        grad = new float[padded];
        gradScores = new float[padded];
        scratch = new float[padded];
        probs = relaxed && spec.Relaxation == GumbelRelaxation.SoftTopK ? new float[spec.Keep * padded] : [];
    }

    /// <summary>The relaxed mask of the last <see cref="Forward"/> (first Layers entries).</summary>
    public ReadOnlySpan<float> Soft => soft.AsSpan(0, spec.Layers);

    /// <summary>The gradient with respect to the logits of the last <see cref="Backward"/>.</summary>
    public ReadOnlySpan<float> GradLogits => gradScores.AsSpan(0, spec.Layers);

    /// <summary>Noise, scores and the stable top-k order of one sample; writes its hard mask.</summary>
    public void Rank(ReadOnlySpan<float> logits, int sample, Span<float> hard)
    {
        var layers = spec.Layers;
        GumbelNoise.Fill(spec.Seed, spec.Step, sample, noise);
        for (var i = 0; i < layers; i++)
        {
            scores64[i] = logits[i] + noise[i];
            scores[i] = logits[i] + (float)noise[i];
        }
        scores.AsSpan(layers).Fill(float.NegativeInfinity);
        StableTopK.Order(scores64, order);
        hard.Clear();
        foreach (var layer in order.AsSpan(0, spec.Keep))
            hard[layer] = 1f;
    }

    /// <summary>The relaxed mask of the sample last passed to <see cref="Rank"/>.</summary>
    public void Forward()
    {
        if (spec.Relaxation == GumbelRelaxation.Sigmoid)
            SigmoidForward();
        else
            SoftTopKForward();
    }

    /// <summary>Gradient of sum(gradMask * soft) with respect to the logits, after <see cref="Forward"/>.</summary>
    public void Backward(ReadOnlySpan<float> gradMask)
    {
        gradMask.CopyTo(grad);
        grad.AsSpan(spec.Layers).Clear();
        if (spec.Relaxation == GumbelRelaxation.Sigmoid)
            SigmoidBackward();
        else
            SoftTopKBackward();
    }

    private void SoftTopKForward()
    {
        var tau = Vector256.Create(spec.Temperature);
        var floor = Vector256.Create(OneMinusPFloor);
        var s = Lanes(shifted);
        var y = Lanes(soft);
        var z = Lanes(scratch);
        scores.CopyTo(shifted);
        soft.AsSpan().Clear();
        for (var t = 0; t < spec.Keep; t++)
        {
            var p = Lanes(probs.AsSpan(t * padded, padded));
            var max = Vector256.Create(float.NegativeInfinity);
            for (var c = 0; c < s.Length; c++)
            {
                z[c] = s[c] / tau;
                max = Vector256.Max(max, z[c]);
            }
            var m = Vector256.Create(HorizontalMax(max));
            var sum = Vector256<float>.Zero;
            for (var c = 0; c < s.Length; c++)
            {
                p[c] = Vector256.Exp(z[c] - m);
                sum += p[c];
            }
            var total = Vector256.Create(Vector256.Sum(sum));
            for (var c = 0; c < s.Length; c++)
            {
                var pc = p[c] / total;
                p[c] = pc;
                y[c] += pc;
                s[c] += Vector256.Log(Vector256.Max(Vector256<float>.One - pc, floor));
            }
        }
    }

    private void SoftTopKBackward()
    {
        var tau = Vector256.Create(spec.Temperature);
        var floor = Vector256.Create(OneMinusPFloor);
        var g = Lanes(grad);
        var gs = Lanes(gradScores);
        var gp = Lanes(scratch);
        gradScores.AsSpan().Clear();
        for (var t = spec.Keep - 1; t >= 0; t--)
        {
            var p = Lanes(probs.AsSpan(t * padded, padded));
            var dot = Vector256<float>.Zero;
            for (var c = 0; c < g.Length; c++)
            {
                var oneMinus = Vector256<float>.One - p[c];
                var throughLog = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(oneMinus, floor), gs[c] / oneMinus, Vector256<float>.Zero);
                gp[c] = g[c] - throughLog;
                dot += gp[c] * p[c];
            }
            var d = Vector256.Create(Vector256.Sum(dot));
            for (var c = 0; c < g.Length; c++)
                gs[c] += p[c] * (gp[c] - d) / tau;
        }
    }

    private float Threshold() =>
        spec.Keep < spec.Layers ? 0.5f * (scores[order[spec.Keep - 1]] + scores[order[spec.Keep]]) : float.NegativeInfinity;

    private void SigmoidForward()
    {
        var t = Threshold();
        for (var i = 0; i < spec.Layers; i++)
            soft[i] = 1f / (1f + MathF.Exp(-((scores[i] - t) / spec.Temperature)));
    }

    private void SigmoidBackward()
    {
        gradScores.AsSpan().Clear();
        if (spec.Keep >= spec.Layers)
            return; // every soft value is exactly 1 whatever the scores
        var total = 0f;
        for (var i = 0; i < spec.Layers; i++)
        {
            var y = soft[i];
            gradScores[i] = grad[i] * y * (1f - y) / spec.Temperature;
            total += gradScores[i];
        }
        // t = (s_a + s_b) / 2 moves with the two boundary scores, so each takes half of -sum.
        gradScores[order[spec.Keep - 1]] -= 0.5f * total;
        gradScores[order[spec.Keep]] -= 0.5f * total;
    }

    private static Span<Vector256<float>> Lanes(Span<float> row) => MemoryMarshal.Cast<float, Vector256<float>>(row);

    private static float HorizontalMax(Vector256<float> v)
    {
        var max = v[0];
        for (var i = 1; i < Vector256<float>.Count; i++)
            max = MathF.Max(max, v[i]);
        return max;
    }
}
