using E3.Backends;
using E3.Model.Decoder;

namespace E3.Model.Training;

/// <summary>
/// Bytes a <see cref="GatedDecoderTrainer"/> allocates for [batch, sequence] tokens, by kind, computed from the config
/// alone (no weights are read), so a 32B model can be planned from its config.json. Weights: projection matrices and
/// embedding in the weight dtype, norms and biases fp32. Saved activations: every layer's input, the layer tapes (one
/// shared tape with checkpointing) and the head's outputs. Backward scratch: dlogits and the per-layer gradient
/// buffers. With a loss fused with the LM head (<see cref="GatedDecoderTrainer.ForwardHidden"/>, as distillation
/// runs) the trainer holds no [rows, V] logits or dlogits; the loss's own chunk of logits comes on top. Gradients:
/// fp32 per trainable tensor. Optimizer state is the AdamW figure (two fp32 moments per trainable element), with fp32
/// master copies of trainable bf16 matrices.
/// </summary>
public sealed record TrainingMemoryPlan(long Weights, long SavedActivations, long BackwardScratch, long Gradients, long OptimizerState, long MasterWeights)
{
    /// <summary>Live bytes during the forward: weights and everything saved for the backward.</summary>
    public long Forward => Weights + SavedActivations;

    /// <summary>Live bytes during the backward: the forward's plus scratch and gradients.</summary>
    public long Backward => Forward + BackwardScratch + Gradients;

    /// <summary>Live bytes during an optimizer step (activations released): weights, gradients, moments, master weights.</summary>
    public long OptimizerStep => Weights + Gradients + OptimizerState + MasterWeights;

    /// <summary>The largest stage.</summary>
    public long Peak => Math.Max(Backward, OptimizerStep);

    /// <summary>Plans one forward+backward (and, in Train mode, an AdamW step).</summary>
    /// <param name="config">The model.</param>
    /// <param name="sequence">Tokens per sequence T.</param>
    /// <param name="batch">Sequences B.</param>
    /// <param name="options">Mode, checkpointing and freeze patterns, as the trainer gets them.</param>
    /// <param name="weightType">How projection matrices are kept (F32 or BF16).</param>
    /// <param name="fusedHead">Plan the fused-head path (no logits or dlogits in the trainer) rather than dense logits.</param>
    public static TrainingMemoryPlan Create(ModelConfig config, int sequence, int batch, TrainingOptions options, DType weightType, bool fusedHead = false)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(options);
        if (sequence <= 0) throw new ArgumentOutOfRangeException(nameof(sequence), $"--seq {sequence} must be positive");
        if (batch <= 0) throw new ArgumentOutOfRangeException(nameof(batch), $"--batch {batch} must be positive");
        if (weightType is not (DType.F32 or DType.BF16)) throw new ArgumentException($"weights are kept as F32 or BF16, not {weightType}", nameof(weightType));
        try
        {
            return Plan(config, checked((long)sequence * batch), options, weightType, fusedHead);
        }
        catch (OverflowException)
        {
            throw new ArgumentOutOfRangeException(nameof(sequence),
                $"--seq {sequence} x --batch {batch}: the plan exceeds 2^63 bytes (8 EiB); no machine holds that");
        }
    }

    static TrainingMemoryPlan Plan(ModelConfig config, long rows, TrainingOptions options, DType weightType, bool fusedHead)
    {
        checked
        {
            long h = config.HiddenSize, v = config.VocabSize;

            long weights = 0, gradients = 0, master = 0;
            var filter = options.Parameters();
            filter.RequireLayers(config);
            foreach (var (name, shape) in WeightNames.Expected(config))
            {
                long elements = shape.Aggregate(1L, (a, d) => a * d);
                bool matrix = shape.Length == 2;
                weights += elements * (matrix ? weightType.SizeInBytes() : 4);
                if (options.Mode != TrainingMode.Train || !filter.IsTrainable(name)) continue;
                gradients += 4 * elements;
                if (matrix && weightType == DType.BF16) master += 4 * elements;
            }

            long tapes = (options.Checkpointing ? 1 : config.NumLayers) * LayerTape.Bytes(config, rows);
            long logits = fusedHead ? 0 : 4 * rows * v;
            // Layer inputs, running hidden, final normed hidden, logits.
            long saved = 4 * rows * h * (config.NumLayers + 2) + logits + tapes;
            // dlogits, dnormed, dhidden, per-layer gradient scratch.
            long scratch = logits + 8 * rows * h + LayerGradScratch.Bytes(config, rows);
            // The stages' sums too, so that no figure printed is a wrapped-around negative.
            _ = weights + saved + scratch + gradients + 2 * gradients + master;
            return new TrainingMemoryPlan(weights, saved, scratch, gradients, 2 * gradients, master);
        }
    }
}
