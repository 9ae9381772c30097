using System.Numerics.Tensors;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Pruning.Distillation;

namespace E3.Pruning.Distill;

/// <summary>
/// The entropy-weighted distillation loss (<see cref="EntropyKdLoss"/>) of a gated student against a teacher (a model
/// run with every gate at 1, or a top-K cache). The loss is fused with the student's LM head (<see cref="EntropyKdLmHead"/>): the
/// student's logits are formed one chunk of rows at a time, and the head's gradient is computed here rather than by
/// the trainer, which then runs <see cref="GatedDecoderTrainer.BackwardFromHidden"/>.
/// </summary>
public sealed class DistillationObjective : ITrainingObjective
{
    /// <summary>Rows of fp32 logits one LM-head chunk may hold, in bytes.</summary>
    public const long ChunkBudgetBytes = 64L << 20;

    readonly IKdTeacherSource _teacher;
    readonly DecoderModel _student;
    readonly float[] _gates;
    readonly KdOptions _options;
    readonly string _headName;
    readonly bool _trainHead;
    // Reused across steps: for a 152K vocabulary the head and its gradient are V·H floats each (2.5 GB at H = 4096),
    // which a fresh array per step would push through the large-object heap every time.
    float[] _head = [], _dHead = [], _dHidden = [];

    /// <param name="teacher">The teacher's distributions; must share the student's vocabulary.</param>
    /// <param name="student">The student being trained.</param>
    /// <param name="gates">The student's gates (0 for a dropped layer).</param>
    /// <param name="options">The loss settings.</param>
    /// <param name="freeze">The run's freeze globs (decides whether the LM head is trained).</param>
    public DistillationObjective(IKdTeacherSource teacher, DecoderModel student, IReadOnlyList<float> gates, KdOptions options, IEnumerable<string> freeze)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(student);
        options.Validate();
        RequireSameVocabulary(teacher.Vocab, teacher.Source, student.Config);
        if (gates.Count != student.Config.NumLayers)
            throw new ArgumentException($"{gates.Count} gates for a student with {student.Config.NumLayers} layers");
        _teacher = teacher;
        _student = student;
        _gates = gates.ToArray();
        _options = options;
        _headName = student.Config.TieWordEmbeddings ? WeightNames.Embedding : WeightNames.LmHead;
        _trainHead = new ParameterFilter(freeze).IsTrainable(_headName);
    }

    /// <summary>Throws <see cref="ModelFormatException"/> naming the student's config and the teacher when the vocabularies differ.</summary>
    public static void RequireSameVocabulary(int teacherVocab, string teacherSource, ModelConfig student)
    {
        if (teacherVocab != student.VocabSize)
            throw new ModelFormatException(student.SourcePath, "vocab_size",
                $"the student has {student.VocabSize} but the teacher ({teacherSource}) has {teacherVocab}: distillation needs one vocabulary");
    }

    /// <inheritdoc/>
    public IReadOnlyCollection<string> SideGradientNames => _trainHead ? [_headName] : [];

    /// <inheritdoc/>
    public double ForwardBackward(GatedDecoderTrainer trainer, long batchIndex, ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, int batch,
        IReadOnlyDictionary<string, float[]> extraGradients)
    {
        var c = _student.Config;
        var teacher = _teacher.For(batchIndex, inputs, batch);
        trainer.ForwardHidden(inputs, batch, _gates);
        float[] hidden = trainer.NormedHidden();
        long headLength = (long)c.VocabSize * c.HiddenSize;
        if (_head.Length != headLength) _head = new float[headLength];
        if (_trainHead && _dHead.Length != headLength) _dHead = new float[headLength];
        if (_dHidden.Length != hidden.Length) _dHidden = new float[hidden.Length];
        // The head is read again every step: the optimizer may have changed it since the last one.
        _student.Backend.Download(_student.Weights.LmHead, _head);
        var dHead = _trainHead ? _dHead.AsSpan() : [];
        var result = EntropyKdLmHead.Compute(hidden, c.HiddenSize, _head, c.VocabSize, teacher, targets, _options, _dHidden, dHead, ChunkBudgetBytes);
        trainer.BackwardFromHidden(_dHidden);
        if (_trainHead)
        {
            var sink = extraGradients[_headName];
            TensorPrimitives.Add(sink, _dHead, sink);
        }
        return result.Loss.Loss;
    }
}
