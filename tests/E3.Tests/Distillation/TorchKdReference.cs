using E3.Pruning.Distillation;
using TorchSharp;
using static TorchSharp.torch;

namespace E3.Tests.Distillation;

/// <summary>
/// The loss written with TorchSharp's composite ops (log_softmax, softmax, entropy, weighted sum) and
/// differentiated by autograd, independently of the engine. Runs in the dtype asked for (float64 for the
/// reference values, float32/bfloat16 to measure a same-precision framework's own error).
/// </summary>
internal static class TorchKdReference
{
    public sealed record Result(double Loss, float[] Gradient);

    /// <summary>Dense teacher [T, Vt] against student [T, Vs].</summary>
    public static Result Dense(float[] student, int studentVocab, float[] teacher, int teacherVocab, int rows, int[]? labels, KdOptions o,
        ScalarType dtype = ScalarType.Float64)
    {
        using var scope = NewDisposeScope();
        var zs = tensor(student, [rows, studentVocab]).to(dtype).requires_grad_(true);
        var loss = DenseLoss(zs, teacher, teacherVocab, labels, o);
        return Backward(zs, loss);
    }

    /// <summary>The loss as a tensor of <paramref name="zs"/> [T, Vs] (any graph above it), for autograd through an LM head.</summary>
    public static Tensor DenseLoss(Tensor zs, float[] teacher, int teacherVocab, int[]? labels, KdOptions o)
    {
        int rows = (int)zs.shape[0], studentVocab = (int)zs.shape[1];
        int v = Math.Min(studentVocab, teacherVocab);
        var zt = tensor(teacher, [rows, teacherVocab]).to(zs.dtype);
        double tau = o.Temperature;
        var a = zt[.., ..v] / tau;
        var b = zs[.., ..v] / tau;
        var logp = nn.functional.log_softmax(a, 1);
        var logq = nn.functional.log_softmax(b, 1);
        var p = logp.exp();
        var entropy = -(p * logp).sum(1);
        var kl = o.Direction == KlDirection.Forward
            ? (p * (logp - logq)).sum(1)
            : (logq.exp() * (logq - logp)).sum(1);
        return Loss(zs, kl, entropy, rows, v, labels, o);
    }

    /// <summary>Sparse teacher: K+1 buckets from the given top-K log-probabilities.</summary>
    public static Result Sparse(float[] student, int studentVocab, int[] indices, float[] logProbs, int k, int rows, int[]? labels, KdOptions o,
        ScalarType dtype = ScalarType.Float64)
    {
        using var scope = NewDisposeScope();
        var zs = tensor(student, [rows, studentVocab]).to(dtype).requires_grad_(true);
        var idx = tensor(indices.Select(i => (long)i).ToArray(), [rows, k]);
        double tau = o.Temperature;
        var logq = nn.functional.log_softmax(zs / tau, 1);
        var logqTop = logq.gather(1, idx);
        // Tail of q by log-sum-exp over the columns not in the top-K (no 1 − Σ cancellation).
        var inTop = zeros([rows, studentVocab], ScalarType.Bool).scatter(1, idx, ones([rows, k], ScalarType.Bool));
        var logqTail = logq.masked_fill(inTop, double.NegativeInfinity).logsumexp(1, keepdim: true);
        var floor = Math.Log(KdPlan.TailFloor);
        var logQ = cat([logqTop, logqTail.clamp_min(floor)], 1);

        var lp = tensor(logProbs, [rows, k]).to(ScalarType.Float64).clamp_max(0.0);
        var tail = (1.0 - lp.exp().sum(1, keepdim: true)).clamp_min(0.0);
        var buckets = cat([lp, tail.log()], 1) / tau;
        var logP = nn.functional.log_softmax(buckets, 1).to(dtype);
        var logPFloored = cat([logP[.., ..k], logP[.., k..].clamp_min(floor)], 1);
        var P = logP.exp();
        var Q = cat([logqTop.exp(), logqTail.exp()], 1);
        var entropy = -where(P > 0, P * logP, zeros_like(P)).sum(1);
        var kl = o.Direction == KlDirection.Forward
            ? where(P > 0, P * (logPFloored - logQ), zeros_like(P)).sum(1)
            : where(Q > 0, Q * (logQ - logPFloored), zeros_like(Q)).sum(1);
        return Backward(zs, Loss(zs, kl, entropy, rows, studentVocab, labels, o));
    }

    private static Tensor Loss(Tensor zs, Tensor kl, Tensor entropy, int rows, int v, int[]? labels, KdOptions o)
    {
        var valid = labels is null ? ones([rows], ScalarType.Bool) : tensor(labels.Select(l => l != o.IgnoreIndex).ToArray());
        var dtype = zs.dtype;
        double n = valid.to(ScalarType.Float64).sum().item<double>() is var count && count > 0 ? count : 1;
        // The weights are constants of the backward pass.
        var h = entropy.detach().to(ScalarType.Float64) * valid.to(ScalarType.Float64);
        Tensor w;
        switch (o.Weighting)
        {
            case EntropyWeighting.Linear:
                var mean = h.sum() / n;
                w = mean.item<double>() > 0 ? h / mean : ones_like(h);
                break;
            case EntropyWeighting.Softmax:
                var scores = (h / o.SoftmaxBeta).masked_fill(valid.logical_not(), double.NegativeInfinity);
                w = n * nn.functional.softmax(scores, 0);
                break;
            default:
                w = ones_like(h);
                break;
        }
        if (o.MinWeight is { } lo) w = w.clamp_min(lo);
        if (o.MaxWeight is { } hi) w = w.clamp_max(hi);
        w = (w * valid.to(ScalarType.Float64)).to(dtype);
        double tau = o.Temperature;
        var kd = (w * kl.masked_fill(valid.logical_not(), 0.0)).sum() * (tau * tau / n);
        var loss = o.KdFraction * kd;
        if (o.KdFraction < 1 && labels is not null)
        {
            var target = tensor(labels.Select(l => (long)l).ToArray());
            var ce = nn.functional.cross_entropy(zs[.., ..v], target, ignore_index: o.IgnoreIndex, reduction: nn.Reduction.Sum) / n;
            loss = loss + (1 - o.KdFraction) * ce;
        }
        return loss;
    }

    private static Result Backward(Tensor zs, Tensor loss)
    {
        loss.backward();
        var grad = zs.grad!.to(ScalarType.Float32).contiguous().data<float>().ToArray();
        return new Result(loss.to(ScalarType.Float64).item<double>(), grad);
    }
}
