using E3.Backends.Numerics;
using System.Runtime.CompilerServices;
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

    /// <summary>
    /// The step at which the last soft-top-k <see cref="Forward"/> left the weight recurrence for log space (0: from
    /// the start), or -1 when it did not (tests check both paths are taken and agree).
    /// </summary>
    public int LogSpaceFallbackStep { get; private set; } = -1;

    /// <summary>Skips the weight recurrence (for tests comparing the two recurrences on the same samples).</summary>
    public bool ForceLogSpace { get; init; }

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
        LogSpaceFallbackStep = ForceLogSpace ? 0 : TrySoftTopKWeightsForward();
        if (LogSpaceFallbackStep >= 0)
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
    // the largest in [1, 2). Returns the step at which a weight fell below RelativeWeightFloor of the largest
    // (the sample is then redone in log space), or -1 when none did (the usual case). 1 - p of the leading
    // layer (largest weight, lowest index) is the sum of the others over the total, not a subtraction that
    // rounds to 0 once p > 1 - 2^-24 (as the kernel's
    // e3_gumbel_topk_softtopk_forward). probs holds p per step: [k, padded]; leadQs that 1 - p of the leader.
    private unsafe int TrySoftTopKWeightsForward()
    {
        var tauV = Vector256.Create(spec.Temperature);
        var unitTau = spec.Temperature == 1f;
        var floor = Vector256.Create(OneMinusPFloor);
        fixed (float* w = weights, y = soft, pad = paddingInfinity, s = scores, probsAt = probs)
        {
            var max = Vector256.Create(float.NegativeInfinity);
            for (var c = 0; c < padded; c += 8)
            {
                var z = Vector256.Load(s + c) / tauV; // as in log space
                z.Store(w + c);
                max = Vector256.Max(max, z);
            }
            var largest = HorizontalMax(max);
            var lead = FirstIndexOf(w, largest);
            var smallest = Vector256.Create(float.PositiveInfinity);
            for (var c = 0; c < padded; c += 8)
            {
                var e = Vector256.Exp(Vector256.Load(w + c) - Vector256.Create(largest));
                e.Store(w + c);
                smallest = Vector256.Min(smallest, e + Vector256.Load(pad + c));
            }
            var m = 1f;
            w[lead] = m; // exp(0), whatever the vector exp's rounding
            if (!(HorizontalMin(smallest) >= RelativeWeightFloor))
                return 0;
            new Span<float>(y, padded).Clear();
            for (var t = 0; ; t++)
            {
                var p = probsAt + t * padded;
                w[lead] = 0f; // the leader out of the sum: the rest without cancellation
                Vector256<float> sumEven = default, sumOdd = default;
                for (var c = 0; c < padded; c += 16)
                {
                    sumEven += Vector256.Load(w + c);
                    if (c + 8 < padded)
                        sumOdd += Vector256.Load(w + c + 8);
                }
                var rest = Vector256.Sum(sumEven + sumOdd);
                var total = rest + m;
                var inverse = Vector256.Create(1f / total);
                leads[t] = lead;
                leadQs[t] = rest / total;

                // p, the soft mask and the next weights in one pass. The next weights are scaled by 2^-e for the
                // largest weight m in [2^e, 2^(e+1)). The leader's lane (weight 0 here, masked from the minimum)
                // is set afterwards from its own q.
                var scale = Vector256.Create(BitConverter.Int32BitsToSingle((254 - (BitConverter.SingleToInt32Bits(m) >> 23)) << 23));
                var leadNext = m * Power(Vector256.Create(MathF.Max(leadQs[t], OneMinusPFloor)), tauV, unitTau)[0] * scale[0];
                pad[lead] = float.PositiveInfinity;
                max = Vector256<float>.Zero;
                smallest = Vector256.Create(float.PositiveInfinity);
                for (var c = 0; c < padded; c += 8)
                {
                    var wc = Vector256.Load(w + c);
                    var pc = wc * inverse;
                    pc.Store(p + c);
                    (Vector256.Load(y + c) + pc).Store(y + c);
                    var q = Vector256.Max(Vector256<float>.One - pc, floor);
                    var next = wc * Power(q, tauV, unitTau) * scale;
                    next.Store(w + c);
                    max = Vector256.Max(max, next);
                    smallest = Vector256.Min(smallest, next + Vector256.Load(pad + c));
                }
                pad[lead] = 0f;
                p[lead] = m * inverse[0];
                y[lead] += p[lead];
                if (t == spec.Keep - 1)
                    return -1;
                w[lead] = leadNext;
                m = MathF.Max(HorizontalMax(max), leadNext);
                // In fp64: the bound itself may lie below fp32's range when m is small.
                if (!(HorizontalMin(smallest) >= RelativeWeightFloor * m && leadNext >= RelativeWeightFloor * m))
                    return t + 1;
                lead = FirstIndexOf(w, m);
            }
        }
    }

    // q^(1/tau), exact for tau = 1 (the common case: no transcendental at all).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
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
            var lead = FirstIndexOf(weights, m);
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
    private unsafe void SoftTopKBackward()
    {
        var tau = Vector256.Create(spec.Temperature);
        var floor = Vector256.Create(OneMinusPFloor);
        new Span<float>(gradScores).Clear();
        fixed (float* g = grad, gs = gradScores, gp = scratch, probsAt = probs)
        {
            for (var t = spec.Keep - 1; t >= 0; t--)
            {
                var p = probsAt + t * padded;
                var lead = leads[t];
                var pLead = p[lead];
                var qLead = leadQs[t];
                p[lead] = 0f; // the leader out of the dot product
                Vector256<float> dotEven = default, dotOdd = default;
                for (var c = 0; c < padded; c += 8)
                {
                    var pc = Vector256.Load(p + c);
                    var q = Vector256<float>.One - pc;
                    var gpc = Vector256.Load(g + c) - Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(q, floor), Vector256.Load(gs + c) / q, Vector256<float>.Zero);
                    gpc.Store(gp + c);
                    if ((c & 8) == 0)
                        dotEven += gpc * pc;
                    else
                        dotOdd += gpc * pc;
                }
                p[lead] = pLead;
                var gsLead = gs[lead];
                var gpLead = g[lead] - (qLead >= OneMinusPFloor ? gsLead / qLead : 0f);
                var rest = Vector256.Sum(dotEven + dotOdd);
                var leadNew = gsLead + pLead * (qLead * g[lead] - (qLead >= OneMinusPFloor ? gsLead : 0f) - rest) / spec.Temperature;
                var subtract = Vector256.Create(pLead * gpLead + rest);
                for (var c = 0; c < padded; c += 8)
                    (Vector256.Load(gs + c) + Vector256.Load(p + c) * (Vector256.Load(gp + c) - subtract) / tau).Store(gs + c);
                gs[lead] = leadNew;
            }
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

    // The first layer holding value (known present; padding lanes never hold it). Span.IndexOf on floats is a
    // scalar loop (float equality is not bitwise), which at k steps per sample cost more than the softmax itself.
    private unsafe int FirstIndexOf(float* row, float value)
    {
        var target = Vector256.Create(value);
        for (var c = 0; ; c += Vector256<float>.Count)
        {
            var hits = Vector256.Equals(Vector256.Load(row + c), target).ExtractMostSignificantBits();
            if (hits != 0)
                return c + System.Numerics.BitOperations.TrailingZeroCount(hits);
            if (c + Vector256<float>.Count >= padded)
                throw new InvalidOperationException($"value {value} is not in the row");
        }
    }

    private unsafe int FirstIndexOf(float[] row, float value)
    {
        fixed (float* at = row)
            return FirstIndexOf(at, value);
    }

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
