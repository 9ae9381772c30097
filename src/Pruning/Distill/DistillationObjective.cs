using System.Numerics.Tensors;
using E3.Backends;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Pruning.Distillation;

namespace E3.Pruning.Distill;

/// <summary>
/// The entropy-weighted distillation loss (<see cref="EntropyKdLoss"/>) of a gated student against a teacher (a model
/// run with every gate at 1, or a top-K cache). The loss is fused with the student's LM head: the student's logits are
/// formed one chunk of rows at a time, and the head's gradient is computed here rather than by the trainer, which then
/// runs the backward from the head's input. On a backend that implements <see cref="IDistillationBackend"/> (cuda,
/// emu) this all happens there (<see cref="BackendKdLmHead"/>) and the head's gradient goes straight into the trainer's
/// buffer; elsewhere it runs on the host (<see cref="EntropyKdLmHead"/>) and returns the head's gradient as a side gradient.
/// </summary>
internal sealed class DistillationObjective : ITrainingObjective
{
    /// <summary>Rows of fp32 logits one LM-head chunk may hold, in bytes.</summary>
    public const long ChunkBudgetBytes = TrainingMemoryPlan.FusedChunkBudgetBytes;

    readonly IKdTeacherSource _teacher;
    readonly DecoderModel _student;
    readonly IDistillationBackend? _onBackend;
    readonly float[] _gates;
    readonly KdOptions _options;
    readonly string _headName;
    readonly bool _trainHead;
    // Host path only, reused across steps: for a 152K vocabulary the head and its gradient are V·H floats each
    // (2.5 GB at H = 4096), which a fresh array per step would push through the large-object heap every time.
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
        _onBackend = student.Backend as IDistillationBackend;
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
    public IReadOnlyCollection<string> SideGradientNames => _trainHead && _onBackend == null ? [_headName] : [];

    /// <inheritdoc/>
    public double ForwardBackward(GatedDecoderTrainer trainer, long batchIndex, ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, int batch,
        IReadOnlyDictionary<string, float[]> extraGradients)
    {
        var teacher = _teacher.For(batchIndex, inputs, batch);
        try
        {
            trainer.ForwardHidden(inputs, batch, _gates);
            return _onBackend != null ? OnBackend(_onBackend, trainer, teacher, targets) : OnHost(trainer, teacher, targets, extraGradients);
        }
        finally
        {
            (teacher as IDisposable)?.Dispose();
        }
    }

    double OnBackend(IDistillationBackend backend, GatedDecoderTrainer trainer, KdTeacher teacher, ReadOnlySpan<int> targets)
    {
        var (hidden, dHidden) = trainer.HeadInput();
        E3.Backends.Tensor? dHead = null;
        if (_trainHead && !trainer.WeightGradients.TryGetValue(_headName, out dHead))
            throw new InvalidOperationException($"the trainer keeps no gradient for '{_headName}', which this objective trains: give both the same freeze list");
        var result = BackendKdLmHead.Compute(backend, hidden, _student.Weights.LmHead, teacher, targets, _options, dHidden, dHead, ChunkBudgetBytes);
        trainer.BackwardFromHiddenGradient();
        return result.Loss.Loss;
    }

    double OnHost(GatedDecoderTrainer trainer, KdTeacher teacher, ReadOnlySpan<int> targets, IReadOnlyDictionary<string, float[]> extraGradients)
    {
        var c = _student.Config;
        if (teacher is BackendDenseTeacher elsewhere) teacher = elsewhere.ToHost();
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
