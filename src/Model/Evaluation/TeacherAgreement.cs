using E3.Model.Decoder;

namespace E3.Model.Evaluation;

/// <summary>A model evaluated against a teacher: the model and the layers it runs (null: all).</summary>
internal readonly record struct StudentUnderTest(DecoderModel Model, LayerMask? Mask);

/// <summary>How closely a student follows a teacher on a token stream, and its own perplexity on the same positions.</summary>
/// <param name="Perplexity">The student's perplexity, identical to <see cref="Evaluation.Perplexity.Evaluate"/> with the same settings.</param>
/// <param name="MeanKl">Mean over scored positions of KL(teacher ‖ student) of the next-token distributions, in nats.</param>
/// <param name="Top1Agreement">Fraction of scored positions where both models' most likely next token is the same.</param>
internal sealed record AgreementResult(PerplexityResult Perplexity, double MeanKl, double Top1Agreement);

/// <summary>
/// Teacher–student agreement over the windows <see cref="Evaluation.Perplexity.Windows"/> picks: each window runs
/// through the teacher once and through every student, and every position that perplexity scores (0..T−2) adds
/// its KL and top-1 match. The teacher may be another checkpoint (e.g. the unpruned original of an exported model)
/// with any number of layers, but must share the vocabulary.
/// </summary>
internal static class TeacherAgreement
{
    /// <summary>One student against the teacher; see <see cref="EvaluateMany"/>.</summary>
    public static AgreementResult Evaluate(DecoderModel teacher, LayerMask? teacherMask, StudentUnderTest student, ReadOnlySpan<int> tokens,
        int window = 256, long maxTokens = long.MaxValue) =>
        EvaluateMany(teacher, teacherMask, [student], tokens, window, maxTokens)[0];

    /// <summary>
    /// Every student against the teacher on the same windows; the teacher's logits are computed once per window.
    /// A student whose vocab_size differs from the teacher's is an error naming both configs.
    /// </summary>
    /// <param name="progress">Called after each window with (windows done, windows in all).</param>
    public static IReadOnlyList<AgreementResult> EvaluateMany(DecoderModel teacher, LayerMask? teacherMask, IReadOnlyList<StudentUnderTest> students,
        ReadOnlySpan<int> tokens, int window = 256, long maxTokens = long.MaxValue, Action<int, int>? progress = null)
    {
        if (window < 2) throw new ArgumentOutOfRangeException(nameof(window), $"window {window} must be at least 2");
        if (tokens.Length < 2) throw new ArgumentException($"agreement needs at least 2 tokens, got {tokens.Length}", nameof(tokens));
        int vocab = teacher.Config.VocabSize;
        foreach (var s in students)
        {
            if (s.Model.Config.VocabSize != vocab)
                throw new ModelFormatException(s.Model.Config.SourcePath, "vocab_size",
                    $"{s.Model.Config.VocabSize} differs from the teacher's {vocab} ({teacher.Config.SourcePath}); KL and top-1 need the same vocabulary");
            s.Model.ValidateTokens(tokens);
        }
        teacher.ValidateTokens(tokens);

        var sums = new Sums[students.Count];
        var windows = Evaluation.Perplexity.Windows(tokens.Length, window, maxTokens);
        for (int wi = 0; wi < windows.Count; wi++)
        {
            var (start, length) = windows[wi];
            ReadOnlySpan<int> w = tokens.Slice(start, length);
            int[] targets = w[1..].ToArray();
            float[] teacherLogits = teacher.Forward(w, teacherMask);
            for (int si = 0; si < students.Count; si++)
                sums[si].Add(teacherLogits, students[si].Model.Forward(w, students[si].Mask), targets, vocab);
            progress?.Invoke(wi + 1, windows.Count);
        }
        return sums.Select(s => s.Result(windows.Count)).ToArray();
    }

    /// <summary>
    /// KL(p ‖ q) = Σ p_i (log p_i − log q_i) with p = softmax(<paramref name="teacherLogits"/>), q = softmax(<paramref name="studentLogits"/>),
    /// in nats. Log-softmax and the sum are in double: for a student close to its teacher the KL is many orders of
    /// magnitude below the log-probabilities it is a difference of (1e-6 vs ~10), which fp32's 7 digits cannot resolve.
    /// </summary>
    public static double KlDivergence(ReadOnlySpan<float> teacherLogits, ReadOnlySpan<float> studentLogits)
    {
        if (teacherLogits.Length != studentLogits.Length)
            throw new ArgumentException($"teacher has {teacherLogits.Length} logits, student {studentLogits.Length}");
        double teacherLse = LogSumExp(teacherLogits), studentLse = LogSumExp(studentLogits);
        double kl = 0;
        for (int i = 0; i < teacherLogits.Length; i++)
        {
            double logP = teacherLogits[i] - teacherLse;
            kl += Math.Exp(logP) * (logP - (studentLogits[i] - studentLse));
        }
        return kl;
    }

    static double LogSumExp(ReadOnlySpan<float> z)
    {
        float max = float.NegativeInfinity;
        foreach (float v in z) max = MathF.Max(max, v);
        double sum = 0;
        foreach (float v in z) sum += Math.Exp((double)v - max);
        return max + Math.Log(sum);
    }

    /// <summary>Running totals for one student; positions are computed in parallel but summed in order, so results are deterministic.</summary>
    struct Sums
    {
        double _nll, _kl;
        long _agree, _positions;

        public void Add(float[] teacherLogits, float[] studentLogits, int[] targets, int vocab)
        {
            int n = targets.Length;
            var kl = new double[n];
            var nll = new double[n];
            var agree = new bool[n];
            Parallel.For(0, n, t =>
            {
                var tl = teacherLogits.AsSpan(t * vocab, vocab);
                var sl = studentLogits.AsSpan(t * vocab, vocab);
                kl[t] = KlDivergence(tl, sl);
                nll[t] = -Evaluation.Perplexity.LogSoftmaxAt(sl, targets[t]);
                agree[t] = GreedyGenerator.ArgMax(tl) == GreedyGenerator.ArgMax(sl);
            });
            for (int t = 0; t < n; t++)
            {
                _nll += nll[t];
                _kl += kl[t];
                if (agree[t]) _agree++;
            }
            _positions += n;
        }

        public readonly AgreementResult Result(int windows)
        {
            double meanNll = _nll / _positions;
            return new AgreementResult(new PerplexityResult(meanNll, Math.Exp(meanNll), _positions, windows), _kl / _positions, (double)_agree / _positions);
        }
    }
}
