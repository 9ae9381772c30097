using E3.Backends.Numerics;
namespace E3.Pruning.Masking;

/// <summary>
/// The fused Gumbel-TopK sampler with a straight-through estimator on the CPU: noise, hard top-k mask, relaxed
/// mask and its vector-Jacobian product for every sample in one pass per sample, samples spread over threads.
/// Same noise and the same hard masks as kernels/gumbel_topk.cu (see <see cref="GumbelNoise"/>).
/// </summary>
/// <param name="maxDegreeOfParallelism">Worker threads; -1 for the runtime's choice.</param>
internal sealed class CpuGumbelTopK(int maxDegreeOfParallelism = -1)
{
    // Samples per work item. The gradient is summed per chunk in fp64, then over chunks in chunk order, so the
    // result does not depend on the thread count or on scheduling.
    private const int ChunkSamples = 64;

    private readonly ParallelOptions parallel = new() { MaxDegreeOfParallelism = maxDegreeOfParallelism };

    /// <summary>Hard masks only: exactly <c>Keep</c> ones in every row of <paramref name="hard"/>.</summary>
    public void SampleHard(ReadOnlySpan<float> logits, in GumbelTopKSpec spec, Span<float> hard)
    {
        spec.Validate(logits);
        spec.RequireMaskLength(hard.Length, nameof(hard));
        Run(logits, spec, default, hard, default, default, relaxed: false);
    }

    /// <summary>Hard masks (the forward value) and relaxed masks (what the backward differentiates).</summary>
    public void Forward(ReadOnlySpan<float> logits, in GumbelTopKSpec spec, Span<float> hard, Span<float> soft)
    {
        spec.Validate(logits);
        spec.RequireMaskLength(hard.Length, nameof(hard));
        spec.RequireMaskLength(soft.Length, nameof(soft));
        Run(logits, spec, default, hard, soft, default, relaxed: true);
    }

    /// <summary>
    /// Forward, then <paramref name="gradLogits"/> = sum over samples of the vector-Jacobian product of the
    /// relaxed mask with <paramref name="gradMask"/> (dL/dm, [Samples x Layers]); overwrites <paramref name="gradLogits"/>.
    /// </summary>
    public void ForwardBackward(ReadOnlySpan<float> logits, in GumbelTopKSpec spec, ReadOnlySpan<float> gradMask,
        Span<float> hard, Span<float> soft, Span<float> gradLogits)
    {
        spec.Validate(logits);
        spec.RequireMaskLength(gradMask.Length, nameof(gradMask));
        spec.RequireMaskLength(hard.Length, nameof(hard));
        spec.RequireMaskLength(soft.Length, nameof(soft));
        if (gradLogits.Length != spec.Layers)
            throw new MaskSamplerException("gradLogits.Length", gradLogits.Length, $"must equal layers = {spec.Layers}");
        for (var i = 0; i < gradMask.Length; i++)
            if (!float.IsFinite(gradMask[i]))
                throw new MaskSamplerException($"gradMask[{i}]", gradMask[i], "must be finite");
        Run(logits, spec, gradMask, hard, soft, gradLogits, relaxed: true);
    }

    private unsafe void Run(ReadOnlySpan<float> logits, GumbelTopKSpec spec, ReadOnlySpan<float> gradMask,
        Span<float> hard, Span<float> soft, Span<float> gradLogits, bool relaxed)
    {
        var layers = spec.Layers;
        var chunks = (spec.Samples + ChunkSamples - 1) / ChunkSamples;
        var backward = !gradLogits.IsEmpty;
        var partial = backward ? new double[chunks * layers] : [];
        fixed (float* logitsPointer = logits, gradPointer = gradMask, hardPointer = hard, softPointer = soft)
        {
            // Raw addresses: spans cannot be captured by the worker lambda; the fixed block outlives Parallel.For.
            nint logitsAt = (nint)logitsPointer, gradAt = (nint)gradPointer, hardAt = (nint)hardPointer, softAt = (nint)softPointer;
            Parallel.For(0, chunks, parallel, () => new GumbelTopKRow(spec, relaxed), (chunk, _, row) =>
            {
                var alpha = new ReadOnlySpan<float>((void*)logitsAt, layers);
                var sum = backward ? partial.AsSpan(chunk * layers, layers) : default;
                var end = Math.Min(spec.Samples, (chunk + 1) * ChunkSamples);
                for (var sample = chunk * ChunkSamples; sample < end; sample++)
                {
                    var offset = (long)sample * layers;
                    row.Rank(alpha, sample, new Span<float>((float*)hardAt + offset, layers));
                    if (!relaxed)
                        continue;
                    row.Forward();
                    row.Soft.CopyTo(new Span<float>((float*)softAt + offset, layers));
                    if (!backward)
                        continue;
                    row.Backward(new ReadOnlySpan<float>((float*)gradAt + offset, layers));
                    var g = row.GradLogits;
                    for (var i = 0; i < layers; i++)
                        sum[i] += g[i];
                }
                return row;
            }, _ => { });
        }
        if (!backward)
            return;
        for (var i = 0; i < layers; i++)
        {
            var total = 0.0;
            for (var chunk = 0; chunk < chunks; chunk++)
                total += partial[chunk * layers + i];
            gradLogits[i] = (float)total;
        }
    }
}
