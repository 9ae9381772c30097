using E3.Model.Training;

namespace E3.Pruning.Distill;

/// <summary>
/// The loss of a training run: the only thing that differs between <c>e3 train</c> and <c>e3 distill</c>. One call
/// runs the student forward and backward on a micro-batch, leaving weight gradients accumulated in the trainer.
/// </summary>
internal interface ITrainingObjective
{
    /// <summary>Tensors whose gradient this objective computes itself (into the extra-gradient buffers), not the trainer.</summary>
    IReadOnlyCollection<string> SideGradientNames { get; }

    /// <summary>
    /// Forward and backward on batch <paramref name="batchIndex"/>, <paramref name="inputs"/> [B, T], with next-token <paramref name="targets"/>; returns
    /// the micro-batch loss. Gradients the trainer does not own (an LM head whose loss is fused with it) are added to
    /// <paramref name="extraGradients"/>, which holds a zeroed buffer for each trainable name in <see cref="SideGradientNames"/>.
    /// </summary>
    double ForwardBackward(GatedDecoderTrainer trainer, long batchIndex, ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, int batch,
        IReadOnlyDictionary<string, float[]> extraGradients);
}
