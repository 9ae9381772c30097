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
    private readonly int[] order, leads;
    private readonly float[] scores, shifted, soft, grad, gradScores, scratch, probs;

    public GumbelTopKRow(in GumbelTopKSpec spec, bool relaxed)
    {
        this.spec = spec;
        padded = (spec.Layers + 7) & ~7;
        noise = new double[spec.Layers];
        scores64 = new double[spec.Layers];
        order = new int[spec.Layers];
        leads = new int[spec.Keep];
        scores = new float[padded];
        shifted = new float[padded];
        soft = new float[padded];
        grad = new float[padded];
        gradScores = new float[padded];
        scratch = new float[padded];
        probs = relaxed && spec.Relaxation == GumbelRelaxation.SoftTopK ? new float[2 * spec.Keep * padded] : [];
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

    // Successive softmax, with 1 - p of the leading layer (largest z, lowest index) taken as the sum of the
    // other exps over the total instead of by subtraction, which rounds to 0 once p > 1 - 2^-24 (the kernel's
    // e3_gumbel_topk_softtopk_forward explains the same choice). probs holds p and that q = 1 - p per step: [k, 2, padded].
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
            var pRow = probs.AsSpan(2 * t * padded, padded);
            var qRow = probs.AsSpan((2 * t + 1) * padded, padded);
            var p = Lanes(pRow);
            var q = Lanes(qRow);
            var max = Vector256.Create(float.NegativeInfinity);
            for (var c = 0; c < s.Length; c++)
            {
                z[c] = s[c] / tau;
                max = Vector256.Max(max, z[c]);
            }
            var m = HorizontalMax(max);
            var lead = scratch.AsSpan(0, spec.Layers).IndexOf(m);
            var mv = Vector256.Create(m);
            for (var c = 0; c < s.Length; c++)
                p[c] = Vector256.Exp(z[c] - mv);
            // The leading exp is exactly 1: leave it out of the sum to get the rest without cancellation.
            pRow[lead] = 0f;
            var sum = Vector256<float>.Zero;
            for (var c = 0; c < s.Length; c++)
                sum += p[c];
            pRow[lead] = 1f;
            var rest = Vector256.Sum(sum);
            var total = Vector256.Create(rest + 1f);
            for (var c = 0; c < s.Length; c++)
            {
                var pc = p[c] / total;
                p[c] = pc;
                q[c] = Vector256<float>.One - pc;
                y[c] += pc;
            }
            qRow[lead] = rest / (rest + 1f);
            leads[t] = lead;
            for (var c = 0; c < s.Length; c++)
                s[c] += Vector256.Log(Vector256.Max(q[c], floor));
        }
    }

    // The softmax VJP of the leading layer is rewritten to avoid cancellation, as in the kernel's
    // e3_gumbel_topk_softtopk_backward: p_lead * (q_lead * grad - gs_lead - rest), rest = sum over the others of p_j gp_j.
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
            var pRow = probs.AsSpan(2 * t * padded, padded);
            var qRow = probs.AsSpan((2 * t + 1) * padded, padded);
            var p = Lanes(pRow);
            var q = Lanes(qRow);
            var lead = leads[t];
            for (var c = 0; c < g.Length; c++)
                gp[c] = g[c] - Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(q[c], floor), gs[c] / q[c], Vector256<float>.Zero);
            var pLead = pRow[lead];
            var qLead = qRow[lead];
            var leadTerm = pLead * scratch[lead];
            pRow[lead] = 0f; // leave the leader out of the dot product
            var dot = Vector256<float>.Zero;
            for (var c = 0; c < g.Length; c++)
                dot += gp[c] * p[c];
            pRow[lead] = pLead;
            var rest = Vector256.Sum(dot);
            var gsLead = gradScores[lead];
            var leadNew = gsLead + pLead * (qLead * grad[lead] - (qLead >= OneMinusPFloor ? gsLead : 0f) - rest) / spec.Temperature;
            var subtract = Vector256.Create(leadTerm + rest);
            for (var c = 0; c < g.Length; c++)
                gs[c] += p[c] * (gp[c] - subtract) / tau;
            gradScores[lead] = leadNew;
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
