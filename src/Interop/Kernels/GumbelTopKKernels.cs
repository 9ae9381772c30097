using E3.Interop.Gpu;

namespace E3.Interop.Kernels;

/// <summary>
/// The relaxed (differentiable) mask whose vector-Jacobian product the straight-through estimator uses.
/// The values are the kernel's <c>relaxation</c> codes in kernels/gumbel_topk.cu.
/// </summary>
public enum GumbelRelaxation
{
    /// <summary>Successive softmax: k times p = softmax(s'/tau), y += p, s' += log(1 - p). Sums to k.</summary>
    SoftTopK = 0,

    /// <summary>sigmoid((s - t)/tau), t halfway between the k-th and (k+1)-th largest scores.</summary>
    Sigmoid = 1,
}

/// <summary>
/// Typed launches of kernels/gumbel_topk.cu: one block per sample, one thread per layer (L &lt;= 256).
/// Mask tensors are [samples x layers] fp32; <c>work</c> is the [samples x keep x 2 x layers] fp32 workspace
/// (each step's p and 1 - p) the soft-top-k forward fills and its backward reads (see <see cref="WorkspaceElements"/>).
/// </summary>
internal sealed class GumbelTopKKernels : KernelFamily
{
    /// <summary>Most layers per mask (the kernel's E3_GUMBEL_MAX_LAYERS).</summary>
    public const int MaxLayers = 256;

    private readonly GpuFunction forward, backward, forwardBackward, noiseBits;

    /// <summary>Loads gumbel_topk.cu on <paramref name="device"/>.</summary>
    public GumbelTopKKernels(IGpuDevice device) : base(device, "gumbel_topk")
    {
        forward = Function("e3_gumbel_topk_forward");
        backward = Function("e3_gumbel_topk_backward");
        forwardBackward = Function("e3_gumbel_topk_forward_backward");
        noiseBits = Function("e3_gumbel_noise_bits");
    }

    /// <summary>Floats of the <c>work</c> workspace for this shape.</summary>
    public static long WorkspaceElements(int samples, int layers, int keep) => 2L * samples * keep * layers;

    /// <summary>One block per sample of 32 * ceil(layers / 32) threads.</summary>
    public static LaunchShape Shape(int samples, int layers) =>
        new(new Dim3(checked((uint)samples)), new Dim3((uint)(32 * ((layers + 31) / 32))));

    /// <summary>Hard masks (exactly <paramref name="keep"/> ones per row), relaxed masks and, for soft-top-k, the workspace.</summary>
    public void Forward(DevicePointer<float> logits, DevicePointer<float> hard, DevicePointer<float> soft, DevicePointer<float> work,
        int layers, int keep, int samples, ulong seed, long step, float temperature, GumbelRelaxation relaxation, GpuStream stream)
    {
        LaunchSamples(forward, [logits.Raw, hard.Raw, soft.Raw, work.Raw], layers, keep, samples, seed, step, temperature, relaxation, stream);
    }

    /// <summary>
    /// Adds the straight-through gradient, summed over samples, to <paramref name="gradLogits"/> (zero it first);
    /// needs the workspace of the <see cref="Forward"/> with the same arguments.
    /// </summary>
    public void Backward(DevicePointer<float> logits, DevicePointer<float> gradMask, DevicePointer<float> work, DevicePointer<float> gradLogits,
        int layers, int keep, int samples, ulong seed, long step, float temperature, GumbelRelaxation relaxation, GpuStream stream)
    {
        LaunchSamples(backward, [logits.Raw, gradMask.Raw, work.Raw, gradLogits.Raw], layers, keep, samples, seed, step, temperature, relaxation, stream);
    }

    /// <summary><see cref="Forward"/> and <see cref="Backward"/> in one launch when dL/dm is known up front.</summary>
    public void ForwardBackward(DevicePointer<float> logits, DevicePointer<float> gradMask, DevicePointer<float> hard, DevicePointer<float> soft,
        DevicePointer<float> work, DevicePointer<float> gradLogits,
        int layers, int keep, int samples, ulong seed, long step, float temperature, GumbelRelaxation relaxation, GpuStream stream)
    {
        LaunchSamples(forwardBackward, [logits.Raw, gradMask.Raw, hard.Raw, soft.Raw, work.Raw, gradLogits.Raw],
            layers, keep, samples, seed, step, temperature, relaxation, stream);
    }

    /// <summary>The fp64 Gumbel noise of every (sample, layer) as raw bits, high word first: [samples x layers x 2] words.</summary>
    public void NoiseBits(DevicePointer<uint> bits, int layers, int samples, ulong seed, long step, GpuStream stream)
    {
        Validate(layers, 1, samples, 1f);
        var args = new KernelArgs();
        args.Add(bits);
        args.Add(layers);
        args.Add(samples);
        args.Add(unchecked((long)seed));
        args.Add(step);
        Launch(noiseBits, Shape(samples, layers), stream, args);
    }

    // The three sample kernels differ only in their leading pointers; the scalars follow in one order.
    private void LaunchSamples(GpuFunction function, ReadOnlySpan<DevicePtr> pointers, int layers, int keep, int samples, ulong seed, long step,
        float temperature, GumbelRelaxation relaxation, GpuStream stream)
    {
        Validate(layers, keep, samples, temperature);
        var args = new KernelArgs();
        foreach (var pointer in pointers)
            args.Add(pointer);
        args.Add(layers);
        args.Add(keep);
        args.Add(samples);
        args.Add(unchecked((long)seed));
        args.Add(step);
        args.Add(temperature);
        args.Add((int)relaxation);
        Launch(function, Shape(samples, layers), stream, args);
    }

    private static void Validate(int layers, int keep, int samples, float temperature)
    {
        if (!(temperature > 0) || float.IsPositiveInfinity(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "must be finite and > 0");
        if (layers > MaxLayers)
            throw new ArgumentOutOfRangeException(nameof(layers), layers, $"must be <= {MaxLayers}");
        AtLeast(layers, 1, nameof(layers));
        AtLeast(keep, 1, nameof(keep));
        if (keep > layers)
            throw new ArgumentOutOfRangeException(nameof(keep), keep, $"must be <= layers ({layers})");
        AtLeast(samples, 0, nameof(samples));
    }
}
