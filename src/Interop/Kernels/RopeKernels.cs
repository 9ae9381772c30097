using E3.Interop.Gpu;

namespace E3.Interop.Kernels;

/// <summary>The per-head layout and rotary parameters of a HeadNormRope call.</summary>
/// <param name="Tokens">Rows of x (batch * tokens per sequence).</param>
/// <param name="Heads">Heads per row.</param>
/// <param name="HeadDim">Values per head (even).</param>
/// <param name="Theta">RoPE base θ.</param>
/// <param name="TokensPerSequence">T: row r is at position start + r % T.</param>
/// <param name="StartPosition">Position of each sequence's first row.</param>
internal readonly record struct RopeLayout(int Tokens, int Heads, int HeadDim, float Theta, int TokensPerSequence, int StartPosition)
{
    internal void Validate()
    {
        if (Tokens < 0) throw new ArgumentOutOfRangeException(nameof(Tokens), Tokens, "must be >= 0");
        if (Heads < 1) throw new ArgumentOutOfRangeException(nameof(Heads), Heads, "must be >= 1");
        if (HeadDim < 2 || HeadDim % 2 != 0) throw new ArgumentOutOfRangeException(nameof(HeadDim), HeadDim, "must be even and >= 2");
        if (!(Theta > 0f)) throw new ArgumentOutOfRangeException(nameof(Theta), Theta, "must be > 0");
        if (TokensPerSequence < 1) throw new ArgumentOutOfRangeException(nameof(TokensPerSequence), TokensPerSequence, "must be >= 1");
        if (StartPosition < 0) throw new ArgumentOutOfRangeException(nameof(StartPosition), StartPosition, "must be >= 0");
    }
}

/// <summary>Typed launches of kernels/rope.cu (one warp per (row, head), 4 warps per block), in place.</summary>
internal sealed class RopeKernels : KernelFamily
{
    private readonly GpuFunction forwardF32, forwardBf16, qkF32, qkBf16, backwardF32, normBackwardF32;

    /// <summary>Loads rope.cu on <paramref name="device"/>.</summary>
    public RopeKernels(IGpuDevice device) : base(device, "rope")
    {
        forwardF32 = Function("e3_head_norm_rope_f32");
        forwardBf16 = Function("e3_head_norm_rope_bf16");
        qkF32 = Function("e3_qk_norm_rope_f32");
        qkBf16 = Function("e3_qk_norm_rope_bf16");
        backwardF32 = Function("e3_rope_backward_f32");
        normBackwardF32 = Function("e3_head_norm_rope_backward_f32");
    }

    /// <summary>
    /// Backward of <see cref="HeadNormRope(DevicePointer{float}, DevicePointer{float}, float, in RopeLayout, GpuStream)"/>, in place on
    /// <paramref name="grad"/>; <paramref name="x"/> is the forward's input. With a norm weight, and unless
    /// <paramref name="dyXHat"/> is null, each (row, head) writes its weight-gradient terms to dyXHat [tokens·heads, headDim].
    /// </summary>
    public void HeadNormRopeBackward(DevicePointer<float> x, DevicePointer<float> normWeight, DevicePointer<float> grad, DevicePointer<float> dyXHat,
        float eps, in RopeLayout layout, GpuStream stream)
    {
        layout.Validate();
        var args = new KernelArgs();
        args.Add(x);
        args.Add(normWeight);
        args.Add(grad);
        args.Add(dyXHat);
        AddNormLayout(ref args, eps, layout);
        Launch(normBackwardF32, LaunchShapes.WarpPerItem((long)layout.Tokens * layout.Heads), stream, args);
    }

    /// <summary>Optional per-head RMSNorm (pass a null <paramref name="normWeight"/> to skip it), then RoPE, in place on x.</summary>
    public void HeadNormRope(DevicePointer<float> x, DevicePointer<float> normWeight, float eps, in RopeLayout layout, GpuStream stream) =>
        LaunchForward(forwardF32, x.Raw, normWeight.Raw, eps, layout, stream);

    /// <summary>bf16 version, rounding where the Hugging Face modules do.</summary>
    public void HeadNormRope(DevicePointer<Bf16> x, DevicePointer<Bf16> normWeight, float eps, in RopeLayout layout, GpuStream stream) =>
        LaunchForward(forwardBf16, x.Raw, normWeight.Raw, eps, layout, stream);

    /// <summary>
    /// <see cref="HeadNormRope(DevicePointer{float}, DevicePointer{float}, float, in RopeLayout, GpuStream)"/> on q
    /// (<paramref name="layout"/>'s heads) and on k (<paramref name="kHeads"/> heads, its own norm weight) in one launch:
    /// an attention layer's queries and keys, with the same values as two launches.
    /// </summary>
    public void QkNormRope(DevicePointer<float> q, DevicePointer<float> qNorm, DevicePointer<float> k, DevicePointer<float> kNorm, int kHeads,
        float eps, in RopeLayout layout, GpuStream stream) =>
        LaunchQk(qkF32, q.Raw, qNorm.Raw, k.Raw, kNorm.Raw, kHeads, eps, layout, stream);

    /// <summary>bf16 version of <see cref="QkNormRope(DevicePointer{float}, DevicePointer{float}, DevicePointer{float}, DevicePointer{float}, int, float, in RopeLayout, GpuStream)"/>.</summary>
    public void QkNormRope(DevicePointer<Bf16> q, DevicePointer<Bf16> qNorm, DevicePointer<Bf16> k, DevicePointer<Bf16> kNorm, int kHeads,
        float eps, in RopeLayout layout, GpuStream stream) =>
        LaunchQk(qkBf16, q.Raw, qNorm.Raw, k.Raw, kNorm.Raw, kHeads, eps, layout, stream);

    /// <summary>Gradient of the rotation alone: dx = rotate(dy, -angle). dx may alias dy.</summary>
    public void RopeBackward(DevicePointer<float> dx, DevicePointer<float> dy, in RopeLayout layout, GpuStream stream)
    {
        layout.Validate();
        var args = new KernelArgs();
        args.Add(dx);
        args.Add(dy);
        args.Add(layout.Tokens);
        args.Add(layout.Heads);
        args.Add(layout.HeadDim);
        args.Add(layout.Theta);
        args.Add(layout.TokensPerSequence);
        args.Add(layout.StartPosition);
        Launch(backwardF32, LaunchShapes.WarpPerItem((long)layout.Tokens * layout.Heads), stream, args);
    }

    private void LaunchForward(GpuFunction function, DevicePtr x, DevicePtr normWeight, float eps, in RopeLayout layout, GpuStream stream)
    {
        layout.Validate();
        var args = new KernelArgs();
        args.Add(x);
        args.Add(normWeight);
        AddNormLayout(ref args, eps, layout);
        Launch(function, LaunchShapes.WarpsOverItems((long)layout.Tokens * layout.Heads, LaunchShapes.MaxRopeBlocks), stream, args);
    }

    private void LaunchQk(GpuFunction function, DevicePtr q, DevicePtr qNorm, DevicePtr k, DevicePtr kNorm, int kHeads, float eps, in RopeLayout layout,
        GpuStream stream)
    {
        layout.Validate();
        if (kHeads < 1) throw new ArgumentOutOfRangeException(nameof(kHeads), kHeads, "must be >= 1");
        var args = new KernelArgs();
        args.Add(q);
        args.Add(qNorm);
        args.Add(k);
        args.Add(kNorm);
        args.Add(kHeads);
        AddNormLayout(ref args, eps, layout);
        Launch(function, LaunchShapes.WarpsOverItems((long)layout.Tokens * (layout.Heads + kHeads), LaunchShapes.MaxRopeBlocks), stream, args);
    }

    // The scalar tail shared by the forward kernels (q's heads for the q+k one) and the backward: tokens, heads, head_dim,
    // eps, theta, T, start.
    private static void AddNormLayout(ref KernelArgs args, float eps, in RopeLayout layout)
    {
        args.Add(layout.Tokens);
        args.Add(layout.Heads);
        args.Add(layout.HeadDim);
        args.Add(eps);
        args.Add(layout.Theta);
        args.Add(layout.TokensPerSequence);
        args.Add(layout.StartPosition);
    }
}
