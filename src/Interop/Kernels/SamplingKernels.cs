using E3.Interop.Gpu;

namespace E3.Interop.Kernels;

/// <summary>
/// How <see cref="SamplingKernels.Sample(DevicePointer{float}, int, DevicePointer{int}, int, int, in SamplingSettings, GpuStream)"/>
/// picks a token; the exact rule is in kernels/sampling.cu's header.
/// </summary>
/// <param name="Temperature">Divides the logits (applied as a product with its fp32 inverse); finite and at least
/// <see cref="MinTemperature"/>.</param>
/// <param name="TopK">Keep the K most likely tokens (1..64), or 0 for no top-k limit.</param>
/// <param name="TopP">Keep the shortest most-likely prefix holding this much probability, in (0, 1]; 1 disables it.
/// With <paramref name="TopK"/> = 0 and TopP &lt; 1 at most the 64 most likely tokens are considered.</param>
/// <param name="Seed">Philox key: the same seed, step and row give the same token.</param>
/// <param name="Step">Philox counter's high half, e.g. the decode position.</param>
internal readonly record struct SamplingSettings(float Temperature, int TopK, float TopP, ulong Seed, long Step)
{
    /// <summary>The smallest temperature: logits multiplied by a larger inverse could overflow fp32 and lose their order.</summary>
    public const float MinTemperature = 1e-3f;

    internal void Validate()
    {
        if (!(Temperature >= MinTemperature) || !float.IsFinite(Temperature))
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, $"must be finite and >= {MinTemperature} (greedy decoding takes the argmax instead)");
        if (TopK < 0 || TopK > SamplingKernels.MaxTopK)
            throw new ArgumentOutOfRangeException(nameof(TopK), TopK, $"must be in 0..{SamplingKernels.MaxTopK} (0: no top-k limit)");
        if (!(TopP > 0f && TopP <= 1f))
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "must be in (0, 1]");
    }
}

/// <summary>
/// Typed launches of kernels/sampling.cu (one block of 256 threads per row): the index of each row's largest
/// logit, a token drawn by temperature / top-k / top-p with Gumbel noise from the shared Philox stream, or the K best
/// tokens with their log-probabilities. Only those (a few values per row) need to come back to the host.
/// </summary>
internal sealed class SamplingKernels : KernelFamily
{
    /// <summary>Largest top-k (E3_SAMPLING_MAX_K), also the candidate bound of top-p alone.</summary>
    public const int MaxTopK = 64;

    private readonly GpuFunction argmaxF32, argmaxBf16, sampleF32, sampleBf16, topKF32, topKBf16;

    /// <summary>Loads sampling.cu on <paramref name="device"/>.</summary>
    public SamplingKernels(IGpuDevice device) : base(device, "sampling")
    {
        argmaxF32 = Function("e3_argmax_f32");
        argmaxBf16 = Function("e3_argmax_bf16");
        sampleF32 = Function("e3_sample_f32");
        sampleBf16 = Function("e3_sample_bf16");
        topKF32 = Function("e3_topk_logprobs_f32");
        topKBf16 = Function("e3_topk_logprobs_bf16");
    }

    /// <summary>
    /// ids[r] = the first index of the largest logits[r, 0..vocab) for r &lt; rows; rows are <paramref name="ld"/> apart.
    /// NaN counts as larger than any number (as torch.argmax), so a row with NaN yields its first NaN's index.
    /// </summary>
    public void ArgMax(DevicePointer<float> logits, int ld, DevicePointer<int> ids, int rows, int vocab, GpuStream stream) =>
        LaunchArgMax(argmaxF32, logits.Raw, ld, ids, rows, vocab, stream);

    /// <summary>bf16 logits; same rule.</summary>
    public void ArgMax(DevicePointer<Bf16> logits, int ld, DevicePointer<int> ids, int rows, int vocab, GpuStream stream) =>
        LaunchArgMax(argmaxBf16, logits.Raw, ld, ids, rows, vocab, stream);

    /// <summary>ids[r] = a token drawn from row r as <paramref name="settings"/> says.</summary>
    public void Sample(DevicePointer<float> logits, int ld, DevicePointer<int> ids, int rows, int vocab, in SamplingSettings settings, GpuStream stream) =>
        LaunchSample(sampleF32, logits.Raw, ld, ids, rows, vocab, settings, stream);

    /// <summary>bf16 logits; same rule.</summary>
    public void Sample(DevicePointer<Bf16> logits, int ld, DevicePointer<int> ids, int rows, int vocab, in SamplingSettings settings, GpuStream stream) =>
        LaunchSample(sampleBf16, logits.Raw, ld, ids, rows, vocab, settings, stream);

    /// <summary>
    /// For r &lt; rows: the <paramref name="k"/> largest logits of row r in descending order (ties to the lower index) into
    /// indices[r·k ..], and their log-softmax over the row into logProbs[r·k ..] (the teacher cache's entries). A row
    /// holding NaN or an infinity gets index −1 in its first slot instead.
    /// </summary>
    public void TopKLogProbs(DevicePointer<float> logits, int ld, DevicePointer<int> indices, DevicePointer<float> logProbs, int rows, int vocab, int k,
        GpuStream stream) =>
        LaunchTopK(topKF32, logits.Raw, ld, indices, logProbs, rows, vocab, k, stream);

    /// <summary>bf16 logits; same rule.</summary>
    public void TopKLogProbs(DevicePointer<Bf16> logits, int ld, DevicePointer<int> indices, DevicePointer<float> logProbs, int rows, int vocab, int k,
        GpuStream stream) =>
        LaunchTopK(topKBf16, logits.Raw, ld, indices, logProbs, rows, vocab, k, stream);

    private void LaunchTopK(GpuFunction function, DevicePtr logits, int ld, DevicePointer<int> indices, DevicePointer<float> logProbs, int rows, int vocab,
        int k, GpuStream stream)
    {
        if (k < 1 || k > MaxTopK || k > vocab)
            throw new ArgumentOutOfRangeException(nameof(k), k, $"must be in [1, min({MaxTopK}, vocab = {vocab})]");
        var args = new KernelArgs();
        AddRows(ref args, logits, ld, indices, rows, vocab, logProbs);
        args.Add(k);
        Launch(function, LaunchShapes.RowPerBlock(rows), stream, args);
    }

    private void LaunchArgMax(GpuFunction function, DevicePtr logits, int ld, DevicePointer<int> ids, int rows, int vocab, GpuStream stream)
    {
        var args = new KernelArgs();
        AddRows(ref args, logits, ld, ids, rows, vocab);
        Launch(function, LaunchShapes.RowPerBlock(rows), stream, args);
    }

    private void LaunchSample(GpuFunction function, DevicePtr logits, int ld, DevicePointer<int> ids, int rows, int vocab, in SamplingSettings settings,
        GpuStream stream)
    {
        settings.Validate();
        var args = new KernelArgs();
        AddRows(ref args, logits, ld, ids, rows, vocab);
        args.Add(1f / settings.Temperature);
        args.Add(settings.TopK);
        args.Add(settings.TopP);
        args.Add(unchecked((long)settings.Seed));
        args.Add(settings.Step);
        Launch(function, LaunchShapes.RowPerBlock(rows), stream, args);
    }

    // Every entry point starts with (logits, ids, [logProbs,] rows, vocab, ld).
    private static void AddRows(ref KernelArgs args, DevicePtr logits, int ld, DevicePointer<int> ids, int rows, int vocab,
        DevicePointer<float>? logProbs = null)
    {
        AtLeast(rows, 0, nameof(rows));
        AtLeast(vocab, 1, nameof(vocab));
        AtLeast(ld, vocab, nameof(ld));
        args.Add(logits);
        args.Add(ids);
        if (logProbs is { } p) args.Add(p);
        args.Add(rows);
        args.Add(vocab);
        args.Add(ld);
    }
}
