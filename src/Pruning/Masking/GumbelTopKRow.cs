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

    /// <summary>
    /// Smallest weight, relative to the largest, the multiplicative recurrence may hold: far inside fp32's normal
    /// range (2^-126), so no weight is flushed to 0 or loses precision as a subnormal. A layer below it could
    /// still become the leader after the ones above it are picked, which only log space represents.
    /// </summary>
    private const double RelativeWeightFloor = 7.8886090522101181e-31; // 2^-100

    private readonly GumbelTopKSpec spec;
    private readonly int padded;
    private readonly double[] noise, scores64;
    private readonly int[] order, leads;
    private readonly float[] scores, weights, soft, grad, gradScores, scratch, probs, leadQs, paddingInfinity;

    public GumbelTopKRow(in GumbelTopKSpec spec, bool relaxed)
    {
        this.spec = spec;
        padded = (spec.Layers + 7) & ~7;
        noise = new double[spec.Layers];
        scores64 = new double[spec.Layers];
        order = new int[spec.Layers];
        leads = new int[spec.Keep];
        leadQs = new float[spec.Keep];
        scores = new float[padded];
        weights = new float[padded];
        soft = new float[padded];
        grad = new float[padded];
        gradScores = new float[padded];
        scratch = new float[padded];
        paddingInfinity = new float[padded];
        paddingInfinity.AsSpan(spec.Layers).Fill(float.PositiveInfinity);
        probs = relaxed && spec.Relaxation == GumbelRelaxation.SoftTopK ? new float[spec.Keep * padded] : [];
    }

    /// <summary>The relaxed mask of the last <see cref="Forward"/> (first Layers entries).</summary>
    public ReadOnlySpan<float> Soft => soft.AsSpan(0, spec.Layers);

    /// <summary>The gradient with respect to the logits of the last <see cref="Backward"/>.</summary>
    public ReadOnlySpan<float> GradLogits => gradScores.AsSpan(0, spec.Layers);

    /// <summary>Whether the last soft-top-k <see cref="Forward"/> had to fall back to log space (for tests).</summary>
    public bool UsedLogSpace { get; private set; }

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
        {
            SigmoidForward();
            return;
        }
        UsedLogSpace = !TrySoftTopKWeightsForward();
        if (UsedLogSpace)
            SoftTopKLogSpaceForward();
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

    // Successive softmax: p_t = softmax(s_t / tau), s_{t+1} = s_t + log max(1 - p_t, floor). In weights
    // w_t = exp(s_t / tau) (up to a common factor) the step is w_{t+1} = w_t * max(1 - p_t, floor)^(1/tau): no exp
    // or log at all when tau = 1, and common factors cancel in the next softmax, so only each product's own
    // rounding is carried, not that of the normalisation. Weights are rescaled by powers of two (exact) to keep
    // the largest in [1, 2). Returns false, leaving the rest to log space, once a weight falls below
    // RelativeWeightFloor of the largest. 1 - p of the leading layer (largest weight, lowest index) is the
    // sum of the others over the total, not a subtraction that rounds to 0 once p > 1 - 2^-24 (as the kernel's
    // e3_gumbel_topk_softtopk_forward). probs holds p per step: [k, padded]; leadQs that 1 - p of the leader.
    private bool TrySoftTopKWeightsForward()
    {
        var tauV = Vector256.Create(spec.Temperature);
        var unitTau = spec.Temperature == 1f;
        var floor = Vector256.Create(OneMinusPFloor);
        var w = Lanes(weights);
        var y = Lanes(soft);
        var pad = Lanes(paddingInfinity);
        var s = Lanes(scores);
        var max = Vector256.Create(float.NegativeInfinity);
        for (var c = 0; c < s.Length; c++)
        {
            w[c] = s[c] / tauV; // z, as in log space
            max = Vector256.Max(max, w[c]);
        }
        var largest = HorizontalMax(max);
        var lead = weights.AsSpan(0, spec.Layers).IndexOf(largest);
        var smallest = Vector256.Create(float.PositiveInfinity);
        for (var c = 0; c < w.Length; c++)
        {
            w[c] = Vector256.Exp(w[c] - Vector256.Create(largest));
            smallest = Vector256.Min(smallest, w[c] + pad[c]);
        }
        var m = 1f;
        weights[lead] = m; // exp(0), whatever the vector exp's rounding
        if (!(HorizontalMin(smallest) >= RelativeWeightFloor))
            return false;
        soft.AsSpan().Clear();
        for (var t = 0; ; t++)
        {
            var p = Lanes(probs.AsSpan(t * padded, padded));
            weights[lead] = 0f; // the leader out of the sum: the rest without cancellation
            var sum = Vector256<float>.Zero;
            for (var c = 0; c < w.Length; c++)
                sum += w[c];
            weights[lead] = m;
            var rest = Vector256.Sum(sum);
            var total = rest + m;
            var inverse = Vector256.Create(1f / total);
            for (var c = 0; c < w.Length; c++)
            {
                var pc = w[c] * inverse;
                p[c] = pc;
                y[c] += pc;
            }
            leads[t] = lead;
            leadQs[t] = rest / total;
            if (t == spec.Keep - 1)
                return true;

            // The next weights, scaled by 2^-e for the largest weight m in [2^e, 2^(e+1)). The leader's lane is
            // zeroed (and masked from the minimum) while the vector loop runs, then set from its own q.
            var scale = Vector256.Create(BitConverter.Int32BitsToSingle((254 - (BitConverter.SingleToInt32Bits(m) >> 23)) << 23));
            var leadNext = m * Power(Vector256.Create(MathF.Max(leadQs[t], OneMinusPFloor)), tauV, unitTau)[0] * scale[0];
            weights[lead] = 0f;
            paddingInfinity[lead] = float.PositiveInfinity;
            max = Vector256<float>.Zero;
            smallest = Vector256.Create(float.PositiveInfinity);
            for (var c = 0; c < w.Length; c++)
            {
                var q = Vector256.Max(Vector256<float>.One - p[c], floor);
                var next = w[c] * Power(q, tauV, unitTau) * scale;
                w[c] = next;
                max = Vector256.Max(max, next);
                smallest = Vector256.Min(smallest, next + pad[c]);
            }
            paddingInfinity[lead] = 0f;
            weights[lead] = leadNext;
            m = MathF.Max(HorizontalMax(max), leadNext);
            // In fp64: the bound itself may lie below fp32's range when m is small.
            if (!(HorizontalMin(smallest) >= RelativeWeightFloor * m && leadNext >= RelativeWeightFloor * m))
                return false;
            lead = weights.AsSpan(0, spec.Layers).IndexOf(m);
        }
    }

    // q^(1/tau), exact for tau = 1 (the common case: no transcendental at all).
    private static Vector256<float> Power(Vector256<float> q, Vector256<float> tau, bool unitTau) =>
        unitTau ? q : Vector256.Exp(Vector256.Log(q) / tau);

    // The same recurrence in log space, for samples whose weights span more than fp32 can hold: s_t kept
    // explicitly, p_t = exp(z - max z) / sum, the leader's exp exactly 1.
    private void SoftTopKLogSpaceForward()
    {
        var tau = Vector256.Create(spec.Temperature);
        var floor = Vector256.Create(OneMinusPFloor);
        var s = Lanes(scratch);
        var y = Lanes(soft);
        var z = Lanes(weights);
        scores.CopyTo(scratch);
        soft.AsSpan().Clear();
        for (var t = 0; t < spec.Keep; t++)
        {
            var pRow = probs.AsSpan(t * padded, padded);
            var p = Lanes(pRow);
            var max = Vector256.Create(float.NegativeInfinity);
            for (var c = 0; c < s.Length; c++)
            {
                z[c] = s[c] / tau;
                max = Vector256.Max(max, z[c]);
            }
            var m = HorizontalMax(max);
            var lead = weights.AsSpan(0, spec.Layers).IndexOf(m);
            var mv = Vector256.Create(m);
            for (var c = 0; c < s.Length; c++)
                p[c] = Vector256.Exp(z[c] - mv);
            pRow[lead] = 0f; // the leading exp is exactly 1: left out of the sum, the rest comes without cancellation
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
                y[c] += pc;
            }
            leads[t] = lead;
            leadQs[t] = rest / (rest + 1f);
            var leadScore = scratch[lead];
            for (var c = 0; c < s.Length; c++)
                s[c] += Vector256.Log(Vector256.Max(Vector256<float>.One - p[c], floor));
            scratch[lead] = leadScore + Vector256.Log(Vector256.Max(Vector256.Create(leadQs[t]), floor))[0];
        }
    }

    // Reverse through the k steps with q = 1 - p recomputed from the saved p (the very value the forward used)
    // and the saved q of the leader. The softmax VJP of the leading layer is rewritten to avoid cancellation, as
    // in the kernel's e3_gumbel_topk_softtopk_backward: p_lead * (q_lead * grad - gs_lead - rest), rest = sum over
    // the others of p_j gp_j.
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
            var pRow = probs.AsSpan(t * padded, padded);
            var p = Lanes(pRow);
            var lead = leads[t];
            var pLead = pRow[lead];
            var qLead = leadQs[t];
            pRow[lead] = 0f; // the leader out of the dot product
            var dot = Vector256<float>.Zero;
            for (var c = 0; c < g.Length; c++)
            {
                var q = Vector256<float>.One - p[c];
                var gpc = g[c] - Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(q, floor), gs[c] / q, Vector256<float>.Zero);
                gp[c] = gpc;
                dot += gpc * p[c];
            }
            pRow[lead] = pLead;
            var gsLead = gradScores[lead];
            var gpLead = grad[lead] - (qLead >= OneMinusPFloor ? gsLead / qLead : 0f);
            var rest = Vector256.Sum(dot);
            var leadNew = gsLead + pLead * (qLead * grad[lead] - (qLead >= OneMinusPFloor ? gsLead : 0f) - rest) / spec.Temperature;
            var subtract = Vector256.Create(pLead * gpLead + rest);
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
        var half = Vector128.Max(v.GetLower(), v.GetUpper());
        var quarter = Vector128.Max(half, Vector128.Shuffle(half, Vector128.Create(2, 3, 0, 1)));
        return MathF.Max(quarter[0], quarter[1]);
    }

    private static float HorizontalMin(Vector256<float> v)
    {
        var half = Vector128.Min(v.GetLower(), v.GetUpper());
        var quarter = Vector128.Min(half, Vector128.Shuffle(half, Vector128.Create(2, 3, 0, 1)));
        return MathF.Min(quarter[0], quarter[1]);
    }
}
