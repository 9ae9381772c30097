using E3.Interop.Gpu;

namespace E3.Interop.Kernels;

/// <summary>
/// Shapes of one causal attention call: q [Batch*T, Heads*HeadDim], k and v [Batch*T, KvHeads*HeadDim],
/// caches [Batch, Capacity, KvHeads*HeadDim]; the T new rows of each sequence sit at positions
/// StartPosition..StartPosition+T-1.
/// </summary>
/// <param name="Batch">Sequences.</param>
/// <param name="TokensPerSequence">T: new query rows per sequence (1 selects the decode kernels).</param>
/// <param name="StartPosition">Keys the caches already hold for every sequence.</param>
/// <param name="Capacity">Positions each cache row block has room for.</param>
/// <param name="Heads">Query heads.</param>
/// <param name="KvHeads">Key/value heads; divides <paramref name="Heads"/>.</param>
/// <param name="HeadDim">Values per head: even, at most 256.</param>
/// <param name="Scale">Multiplies q·k before the softmax (usually 1/sqrt(HeadDim)).</param>
internal readonly record struct AttentionLayout(int Batch, int TokensPerSequence, int StartPosition, int Capacity, int Heads, int KvHeads,
    int HeadDim, float Scale)
{
    /// <summary>Largest head dimension the kernels hold in registers.</summary>
    public const int MaxHeadDim = 256;

    private const int MaxGridYZ = 65535;

    internal void Validate()
    {
        // Batch and heads become grid z and y, which CUDA caps at 65535.
        if (Batch < 1 || Batch > MaxGridYZ) throw new ArgumentOutOfRangeException(nameof(Batch), Batch, $"must be in 1..{MaxGridYZ}");
        if (TokensPerSequence < 1) throw new ArgumentOutOfRangeException(nameof(TokensPerSequence), TokensPerSequence, "must be >= 1");
        if (StartPosition < 0) throw new ArgumentOutOfRangeException(nameof(StartPosition), StartPosition, "must be >= 0");
        if (Heads < 1 || Heads > MaxGridYZ) throw new ArgumentOutOfRangeException(nameof(Heads), Heads, $"must be in 1..{MaxGridYZ}");
        if (KvHeads < 1 || Heads % KvHeads != 0)
            throw new ArgumentOutOfRangeException(nameof(KvHeads), KvHeads, $"must be >= 1 and divide Heads = {Heads}");
        if (HeadDim < 2 || HeadDim > MaxHeadDim || HeadDim % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(HeadDim), HeadDim, $"must be even and in 2..{MaxHeadDim}");
        if (!float.IsFinite(Scale)) throw new ArgumentOutOfRangeException(nameof(Scale), Scale, "must be finite");
        if ((long)StartPosition + TokensPerSequence > Capacity)
            throw new ArgumentOutOfRangeException(nameof(Capacity), Capacity,
                $"positions {StartPosition}..{(long)StartPosition + TokensPerSequence - 1} exceed the KV cache capacity");
    }
}

/// <summary>
/// Typed launches of kernels/attention.cu: appends k and v to the caches, then runs causal GQA attention,
/// flash-style prefill for T &gt; 1 and split-K decode plus a combine step for T = 1.
/// Launch shapes come from <see cref="LaunchShapes"/>; head dims above 128 need more than 48 KiB of shared
/// memory, which is opted into once per kernel.
/// </summary>
internal sealed class AttentionKernels : KernelFamily
{
    private readonly GpuFunction appendF32, appendBf16, prefillF32, prefillBf16, decodeF32, decodeBf16, combineF32, combineBf16;
    private readonly GpuFunction prefillTensorCoresBf16;
    private readonly GpuFunction trainForward, backwardDelta, backwardDq, backwardDkDv;
    private readonly Dictionary<GpuFunction, int> sharedOptIn = [];
    private readonly bool tensorCores;

    /// <summary>The variable that turns the tensor-core prefill off (value 0), to compare it with the portable kernel.</summary>
    public const string TensorCoresVariable = "E3_ATTENTION_TENSOR_CORES";

    /// <summary>Loads attention.cu on <paramref name="device"/>.</summary>
    /// <param name="device">Where the kernels run.</param>
    /// <param name="tensorCores">
    /// Whether a bf16 prefill of head dim 128 may take the tensor-core kernel (on sm_80 and newer, and on the emulator,
    /// which runs its fragment code); false, or <see cref="TensorCoresVariable"/>=0, keeps the portable kernel.
    /// </param>
    public AttentionKernels(IGpuDevice device, bool tensorCores = true) : base(device, "attention")
    {
        this.tensorCores = tensorCores && Environment.GetEnvironmentVariable(TensorCoresVariable) != "0";
        prefillTensorCoresBf16 = Function("e3_attention_prefill_mma_bf16");
        appendF32 = Function("e3_kv_append_f32");
        appendBf16 = Function("e3_kv_append_bf16");
        prefillF32 = Function("e3_attention_prefill_f32");
        prefillBf16 = Function("e3_attention_prefill_bf16");
        decodeF32 = Function("e3_attention_decode_f32");
        decodeBf16 = Function("e3_attention_decode_bf16");
        combineF32 = Function("e3_attention_decode_combine_f32");
        combineBf16 = Function("e3_attention_decode_combine_bf16");
        trainForward = Function("e3_attention_train_forward_f32");
        backwardDelta = Function("e3_attention_backward_delta_f32");
        backwardDq = Function("e3_attention_backward_dq_f32");
        backwardDkDv = Function("e3_attention_backward_dkdv_f32");
    }

    /// <summary>
    /// The training forward (fp32, no cache): output = softmax(scale · q·kᵀ, causal) · v over positions 0..T−1 of each
    /// sequence, and <paramref name="logSumExp"/> [Batch*T, Heads] = each row's log-sum-exp of scaled scores.
    /// <paramref name="layout"/> must have StartPosition 0 (Capacity is ignored: k and v hold exactly T rows per sequence).
    /// </summary>
    public void TrainingForward(DevicePointer<float> q, DevicePointer<float> k, DevicePointer<float> v, DevicePointer<float> output,
        DevicePointer<float> logSumExp, in AttentionLayout layout, GpuStream stream)
    {
        var l = Training(layout);
        AllowShared(trainForward, LaunchShapes.AttentionSharedBytes(l.HeadDim), l.HeadDim);
        var args = new KernelArgs();
        args.Add(q);
        args.Add(k);
        args.Add(v);
        args.Add(output);
        args.Add(logSumExp);
        args.Add(l.TokensPerSequence);
        args.Add(l.Heads);
        args.Add(l.KvHeads);
        args.Add(l.HeadDim);
        args.Add(l.Scale);
        Launch(trainForward, LaunchShapes.AttentionPrefill(l.Batch, l.TokensPerSequence, l.Heads, l.HeadDim), stream, args);
    }

    /// <summary>
    /// Backward of <see cref="TrainingForward"/>, flash-style: probabilities are recomputed tile by tile from q, k and
    /// the saved log-sum-exp. Three launches: delta = rowsum(dO∘O) into <paramref name="delta"/> [Batch*T, Heads],
    /// then dq (one block per 16 query rows of a head) and dk, dv (one block per 16 keys of a kv head, summing its
    /// query heads in a fixed order). No atomics: the result is bit-identical run to run. dq, dk, dv are overwritten.
    /// </summary>
    public void Backward(DevicePointer<float> q, DevicePointer<float> k, DevicePointer<float> v, DevicePointer<float> output,
        DevicePointer<float> dOutput, DevicePointer<float> logSumExp, DevicePointer<float> delta,
        DevicePointer<float> dq, DevicePointer<float> dk, DevicePointer<float> dv, in AttentionLayout layout, GpuStream stream)
    {
        var l = Training(layout);
        int sharedBytes = LaunchShapes.AttentionBackwardSharedBytes(l.HeadDim);
        AllowShared(backwardDq, sharedBytes, l.HeadDim);
        AllowShared(backwardDkDv, sharedBytes, l.HeadDim);
        long items = (long)l.Batch * l.TokensPerSequence * l.Heads;
        var rowDot = new KernelArgs();
        rowDot.Add(output);
        rowDot.Add(dOutput);
        rowDot.Add(delta);
        rowDot.Add(items);
        rowDot.Add(l.HeadDim);
        Launch(backwardDelta, LaunchShapes.WarpPerItem(items), stream, rowDot);

        var query = new KernelArgs();
        AddBackwardInputs(ref query, q, k, v, dOutput, logSumExp, delta);
        query.Add(dq);
        AddBackwardSizes(ref query, l);
        Launch(backwardDq, LaunchShapes.AttentionBackwardDq(l.Batch, l.TokensPerSequence, l.Heads, l.HeadDim), stream, query);

        var key = new KernelArgs();
        AddBackwardInputs(ref key, q, k, v, dOutput, logSumExp, delta);
        key.Add(dk);
        key.Add(dv);
        AddBackwardSizes(ref key, l);
        Launch(backwardDkDv, LaunchShapes.AttentionBackwardDkDv(l.Batch, l.TokensPerSequence, l.KvHeads, l.HeadDim), stream, key);
    }

    private static void AddBackwardInputs(ref KernelArgs args, DevicePointer<float> q, DevicePointer<float> k, DevicePointer<float> v,
        DevicePointer<float> dOutput, DevicePointer<float> logSumExp, DevicePointer<float> delta)
    {
        args.Add(q);
        args.Add(k);
        args.Add(v);
        args.Add(dOutput);
        args.Add(logSumExp);
        args.Add(delta);
    }

    private static void AddBackwardSizes(ref KernelArgs args, in AttentionLayout l)
    {
        args.Add(l.TokensPerSequence);
        args.Add(l.Heads);
        args.Add(l.KvHeads);
        args.Add(l.HeadDim);
        args.Add(l.Scale);
    }

    // The training kernels read k and v as a cache of exactly T rows per sequence, from position 0.
    private static AttentionLayout Training(in AttentionLayout layout)
    {
        if (layout.StartPosition != 0)
            throw new ArgumentOutOfRangeException(nameof(AttentionLayout.StartPosition), layout.StartPosition, "the training attention starts at position 0");
        var l = layout with { Capacity = layout.TokensPerSequence };
        l.Validate();
        return l;
    }

    /// <summary>fp32 words the decode path (T = 1) needs in <c>workspace</c>: per-split partial outputs and (max, sum) pairs.</summary>
    public static long WorkspaceFloats(in AttentionLayout layout) =>
        (long)layout.Batch * layout.Heads * LaunchShapes.MaxDecodeSplits * (layout.HeadDim + 2);

    /// <summary>
    /// Writes k and v into the caches, then output = softmax(scale · q·Kᵀ, causal) · V.
    /// </summary>
    /// <param name="q">Queries [Batch*T, Heads*HeadDim].</param>
    /// <param name="k">New keys [Batch*T, KvHeads*HeadDim].</param>
    /// <param name="v">New values, same shape as <paramref name="k"/>.</param>
    /// <param name="kCache">Key cache [Batch, Capacity, KvHeads*HeadDim].</param>
    /// <param name="vCache">Value cache, same shape.</param>
    /// <param name="output">Result [Batch*T, Heads*HeadDim]; must not alias q.</param>
    /// <param name="stats">Null, or [Batch*T, Heads, 2] floats receiving each row's score max and log-sum-exp.</param>
    /// <param name="workspace">For T = 1: <see cref="WorkspaceFloats"/> floats of scratch; ignored (may be null) otherwise.</param>
    /// <param name="layout">Shapes and scale.</param>
    /// <param name="stream">Stream the launches are queued on.</param>
    public void Forward(DevicePointer<float> q, DevicePointer<float> k, DevicePointer<float> v, DevicePointer<float> kCache, DevicePointer<float> vCache,
        DevicePointer<float> output, DevicePointer<float> stats, DevicePointer<float> workspace, in AttentionLayout layout, GpuStream stream) =>
        Run(new Kernels(appendF32, prefillF32, decodeF32, combineF32, null), new Operands(q.Raw, k.Raw, v.Raw, kCache.Raw, vCache.Raw, output.Raw),
            stats, workspace, layout, stream);

    /// <summary>bf16 storage, fp32 math; the output is rounded to bf16 once. Statistics and workspace stay fp32.</summary>
    public void Forward(DevicePointer<Bf16> q, DevicePointer<Bf16> k, DevicePointer<Bf16> v, DevicePointer<Bf16> kCache, DevicePointer<Bf16> vCache,
        DevicePointer<Bf16> output, DevicePointer<float> stats, DevicePointer<float> workspace, in AttentionLayout layout, GpuStream stream) =>
        Run(new Kernels(appendBf16, prefillBf16, decodeBf16, combineBf16, prefillTensorCoresBf16), new Operands(q.Raw, k.Raw, v.Raw, kCache.Raw, vCache.Raw, output.Raw),
            stats, workspace, layout, stream);

    private readonly record struct Kernels(GpuFunction Append, GpuFunction Prefill, GpuFunction Decode, GpuFunction Combine,
        GpuFunction? TensorCorePrefill);

    /// <summary>
    /// Whether a prefill with these shapes and operands takes the tensor-core kernel: head dim 128 (the kernel's fixed
    /// width), every tensor 16-byte aligned (it moves K and V in 16-byte vectors), and a device with bf16 mma.sync
    /// (sm_80+) or the emulator.
    /// </summary>
    private bool UsesTensorCores(in Kernels kernels, in Operands x, in AttentionLayout layout) =>
        tensorCores && kernels.TensorCorePrefill != null && layout.TokensPerSequence > 1 && layout.HeadDim == LaunchShapes.TensorCoreHeadDim
        && (Device.Info.ComputeCapability >= 80 || Device is Emulator.EmuGpuDevice)
        && (x.Q.Address | x.KCache.Address | x.VCache.Address | x.Output.Address) % 16 == 0;

    /// <summary>Whether a bf16 prefill of <paramref name="layout"/> on 256-byte-aligned buffers would run on tensor cores.</summary>
    public bool PrefillUsesTensorCores(in AttentionLayout layout) =>
        UsesTensorCores(new Kernels(appendBf16, prefillBf16, decodeBf16, combineBf16, prefillTensorCoresBf16),
            new Operands(new DevicePtr(256), new DevicePtr(256), new DevicePtr(256), new DevicePtr(256), new DevicePtr(256), new DevicePtr(256)), layout);

    private readonly record struct Operands(DevicePtr Q, DevicePtr K, DevicePtr V, DevicePtr KCache, DevicePtr VCache, DevicePtr Output);

    private void Run(in Kernels kernels, in Operands x, DevicePointer<float> stats, DevicePointer<float> workspace, in AttentionLayout layout, GpuStream stream)
    {
        layout.Validate();
        bool decode = layout.TokensPerSequence == 1;
        if (decode && workspace.IsNull)
            throw new ArgumentException($"decode (T = 1) needs a workspace of {WorkspaceFloats(layout)} floats", nameof(workspace));
        // Checked before anything is queued, so a refused call leaves the caches as they were.
        AllowShared(decode ? kernels.Decode : kernels.Prefill, LaunchShapes.AttentionSharedBytes(layout.HeadDim), layout.HeadDim);
        Append(kernels.Append, x, layout, stream);
        if (decode)
            Decode(kernels, x, stats, workspace, layout, stream);
        else if (UsesTensorCores(kernels, x, layout))
            PrefillTensorCores(kernels.TensorCorePrefill!.Value, x, stats, layout, stream);
        else
            Prefill(kernels.Prefill, x, stats, layout, stream);
    }

    private void Append(GpuFunction function, in Operands x, in AttentionLayout layout, GpuStream stream)
    {
        int kvWidth = layout.KvHeads * layout.HeadDim;
        long count = (long)layout.Batch * layout.TokensPerSequence * kvWidth;
        var args = new KernelArgs();
        args.Add(x.K);
        args.Add(x.V);
        args.Add(x.KCache);
        args.Add(x.VCache);
        args.Add(count);
        args.Add(layout.TokensPerSequence);
        args.Add(layout.StartPosition);
        args.Add(layout.Capacity);
        args.Add(kvWidth);
        Launch(function, LaunchShapes.GridStride(count), stream, args);
    }

    private void Prefill(GpuFunction function, in Operands x, DevicePointer<float> stats, in AttentionLayout layout, GpuStream stream) =>
        Launch(function, LaunchShapes.AttentionPrefill(layout.Batch, layout.TokensPerSequence, layout.Heads, layout.HeadDim), stream,
            PrefillArgs(x, stats, layout, headDim: true));

    // The tensor-core kernel has its head dim built in, so it takes no head_dim argument.
    private void PrefillTensorCores(GpuFunction function, in Operands x, DevicePointer<float> stats, in AttentionLayout layout, GpuStream stream) =>
        Launch(function, LaunchShapes.AttentionPrefillTensorCores(layout.Batch, layout.TokensPerSequence, layout.Heads), stream,
            PrefillArgs(x, stats, layout, headDim: false));

    private static KernelArgs PrefillArgs(in Operands x, DevicePointer<float> stats, in AttentionLayout layout, bool headDim)
    {
        var args = new KernelArgs();
        args.Add(x.Q);
        args.Add(x.KCache);
        args.Add(x.VCache);
        args.Add(x.Output);
        args.Add(stats);
        args.Add(layout.TokensPerSequence);
        args.Add(layout.StartPosition);
        args.Add(layout.Capacity);
        args.Add(layout.Heads);
        args.Add(layout.KvHeads);
        if (headDim) args.Add(layout.HeadDim);
        args.Add(layout.Scale);
        return args;
    }

    private void Decode(in Kernels kernels, in Operands x, DevicePointer<float> stats, DevicePointer<float> workspace, in AttentionLayout layout, GpuStream stream)
    {
        int keys = layout.StartPosition + 1;
        var decode = LaunchShapes.AttentionDecode(layout.Batch, layout.Heads, layout.KvHeads, layout.HeadDim, keys, Device.Info.MultiprocessorCount);
        // Partial outputs first, then the (max, sum) pairs, both indexed by ((b * heads + h) * splits + split).
        var partialO = workspace;
        var partialMl = workspace.Offset((long)layout.Batch * layout.Heads * decode.Splits * layout.HeadDim);

        var args = new KernelArgs();
        args.Add(x.Q);
        args.Add(x.KCache);
        args.Add(x.VCache);
        args.Add(partialO);
        args.Add(partialMl);
        args.Add(layout.StartPosition);
        args.Add(layout.Capacity);
        args.Add(layout.Heads);
        args.Add(layout.KvHeads);
        args.Add(layout.HeadDim);
        args.Add(layout.Scale);
        args.Add(decode.KeysPerSplit);
        Launch(kernels.Decode, decode.Shape, stream, args);

        var combine = new KernelArgs();
        combine.Add(partialO);
        combine.Add(partialMl);
        combine.Add(x.Output);
        combine.Add(stats);
        combine.Add(layout.Heads);
        combine.Add(layout.HeadDim);
        combine.Add(decode.Splits);
        Launch(kernels.Combine, LaunchShapes.AttentionCombine(layout.Batch, layout.Heads), stream, combine);
    }

    // Blocks above the default 48 KiB must be opted into per function; done once per size increase.
    private void AllowShared(GpuFunction function, int bytes, int headDim)
    {
        if (bytes <= LaunchShapes.DefaultDynamicSharedBytes || (sharedOptIn.TryGetValue(function, out int granted) && granted >= bytes))
            return;
        int limit = Device.Info.MaxSharedMemoryPerBlockOptIn;
        if (bytes > limit)
            throw new ArgumentOutOfRangeException(nameof(AttentionLayout.HeadDim), headDim,
                $"attention with head dim {headDim} needs {bytes} bytes of shared memory per block; {Device.Info.Name} allows {limit}");
        Device.SetMaxDynamicSharedBytes(function, bytes);
        sharedOptIn[function] = bytes;
    }
}
