using E3.Model.Evaluation;

namespace E3.Pruning.Baselines;

/// <summary>KL(p‖q) summed over rows of logits (per row: <see cref="TeacherAgreement.KlDivergence"/>, in double).</summary>
internal static class LogitKl
{
    /// <summary>Σ over rows of Σ_v p_v·(log p_v − log q_v), p = softmax(teacher row), q = softmax(student row).</summary>
    public static double SumOverRows(ReadOnlySpan<float> teacher, ReadOnlySpan<float> student, int vocab)
    {
        if (teacher.Length != student.Length || teacher.Length % vocab != 0)
            throw new ArgumentException($"logits of {teacher.Length} and {student.Length} values are not rows of the same {vocab}-word vocabulary");
        double total = 0;
        for (int r = 0; r < teacher.Length; r += vocab)
            total += TeacherAgreement.KlDivergence(teacher.Slice(r, vocab), student.Slice(r, vocab));
        return total;
    }
}
