using E3.Backends;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Pruning.Distill;
using E3.Pruning.Distillation;

namespace E3.Pruning.Search;

/// <summary>
/// The KD loss of the model under one gate vector against the same model with every gate 1, as the search steps and
/// their KL prior compute it. On a backend that runs the loss itself (cuda, emu) the teacher's logits stay there and
/// the loss is fused with the LM head, so no [T, V] logits cross to the host; elsewhere both sides are dense host
/// logits. The loss's gradient is left for <see cref="Backward"/>.
/// </summary>
internal sealed class GatedKdPass(DecoderModel model, GatedDecoderTrainer trainer)
{
    readonly IDistillationBackend? _device = model.Backend as IDistillationBackend;
    float[] _dLogits = [];

    /// <summary>The teacher on <paramref name="inputs"/> ([batch, T]); the caller disposes it (when IDisposable) after its last use.</summary>
    public KdTeacher Teacher(ReadOnlySpan<int> inputs, int batch)
    {
        if (_device != null) return new BackendDenseTeacher(model, inputs, batch);
        var allOnes = new float[model.Config.NumLayers];
        allOnes.AsSpan().Fill(1f);
        return new DenseTeacher(trainer.Forward(inputs, batch, allOnes), inputs.Length, model.Config.VocabSize);
    }

    /// <summary>The loss of the model gated by <paramref name="gates"/> on <paramref name="inputs"/> against <paramref name="teacher"/> (no labels).</summary>
    public KdLoss Loss(ReadOnlySpan<int> inputs, int batch, ReadOnlySpan<float> gates, KdTeacher teacher, KdOptions options)
    {
        if (_device != null)
        {
            trainer.ForwardHidden(inputs, batch, gates);
            var (hidden, dHidden) = trainer.HeadInput();
            return BackendKdLmHead.Compute(_device, hidden, model.Weights.LmHead, teacher, default, options, dHidden, null,
                DistillationObjective.ChunkBudgetBytes).Loss;
        }
        _dLogits = trainer.Forward(inputs, batch, gates);
        return EntropyKdLoss.Compute(_dLogits, model.Config.VocabSize, teacher, default, options); // the logits now hold dL/dlogits
    }

    /// <summary>The trainer's backward from the last <see cref="Loss"/>'s gradient.</summary>
    public DecoderGradients Backward() => _device != null ? trainer.BackwardFromHiddenGradient() : trainer.Backward(_dLogits);
}
