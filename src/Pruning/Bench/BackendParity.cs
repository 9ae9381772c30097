using E3.Backends;
using E3.Backends.Numerics;
using E3.Backends.Gpu;
using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Model;
using E3.Model.Decoder;
using E3.Pruning.Distillation;
using E3.Pruning.Masking;
using E3.Pruning.TeacherCache;

namespace E3.Pruning.Bench;

/// <summary>One operation run on the device and on the reference backend.</summary>
/// <param name="Name">The operation.</param>
/// <param name="DType">The device's activation dtype for it.</param>
/// <param name="Error">max |device − reference| / max |reference| over every output it writes.</param>
/// <param name="Bound">The largest error that passes.</param>
/// <param name="Failure">The exception's message when the operation threw on either side (Error is then NaN).</param>
internal sealed record ParityCheck(string Name, string DType, double Error, double Bound, string? Failure = null)
{
    /// <summary>Whether <see cref="Error"/> is within <see cref="Bound"/> (a NaN error fails).</summary>
    public bool Passed => Error <= Bound;
}

/// <summary>
/// Every backend operation of the forward, the backward, the distillation loss and the teacher cache, and the
/// Gumbel-TopK mask sampler, run on a device backend and on the CPU with the same random inputs, so that a GPU machine, which has no test runner, can
/// check its kernels against the engine's reference (<c>e3 kernels parity</c>). CI checks the same operations on the
/// emulator with its own tests.
/// </summary>
internal static class BackendParity
{
    /// <summary>
    /// fp32 operations: both sides compute the same formulas and differ in summation order only (GEMM blocking, block
    /// reductions against SIMD dot products, fast exponentials), a few ulps of sums of at most a few hundred terms
    /// here, ~1e-6 relative; 1e-4 leaves room for a GPU's reduction trees while a wrong term, index or scale is O(1).
    /// </summary>
    public const double F32Bound = 1e-4;

    /// <summary>
    /// The bf16 model forward against the fp32 CPU forward: every activation is rounded to 8 significant bits at each of
    /// the ~10 steps of a layer (relative 2^-9 each), over two layers and the head: a few percent of the largest logit.
    /// A wrong layer or mask moves logits by O(1).
    /// </summary>
    public const double Bf16ModelBound = 0.05;

    /// <summary>Runs every check; <paramref name="device"/> must keep fp32 activations, <paramref name="bf16Device"/> bf16 ones.</summary>
    /// <param name="reference">The CPU backend.</param>
    /// <param name="device">The device backend with fp32 activations (training's configuration).</param>
    /// <param name="bf16Device">The device backend with bf16 activations (inference's configuration), on the same device.</param>
    /// <param name="scratchFolder">An empty folder for the random model of the whole-model checks.</param>
    public static IReadOnlyList<ParityCheck> Run(ITrainingBackend reference, ITrainingBackend device, IBackend bf16Device, string scratchFolder)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(bf16Device);
        if (device.ActivationType != DType.F32) throw new ArgumentException($"the fp32 device backend keeps {device.ActivationType} activations", nameof(device));
        if (bf16Device.ActivationType != DType.BF16) throw new ArgumentException($"the bf16 device backend keeps {bf16Device.ActivationType} activations", nameof(bf16Device));
        var checks = new List<ParityCheck>();
        // Each output is compared on its own scale (a scalar loss beside its gradients would hide their errors).
        void Check(string name, Func<Operands, float[][]> op, double bound) => checks.Add(Guarded(name, "f32", bound, () =>
        {
            float[][] want, got;
            using (var r = new Operands(reference)) want = op(r);
            using (var d = new Operands(device)) got = op(d);
            return got.Length == want.Length ? want.Select((w, i) => Error(got[i], w)).Max() : double.NaN;
        }));
        Forward((name, op) => Check(name, op, F32Bound));
        Backward((name, op) => Check(name, op, F32Bound));
        Check("kd_lm_head", KdLmHead, F32Bound);
        Check("topk_indices", o => [TopK(o).Indices], 0); // the same tokens in the same order, exactly
        Check("topk_logprobs", o => [TopK(o).LogProbs], F32Bound);
        Check("sampled_tokens", o => [Sampled(o)], 0); // the same draws from the same logits and noise, exactly
        if (device is GpuBackend gpu)
            foreach (var relaxation in new[] { GumbelRelaxation.SoftTopK, GumbelRelaxation.Sigmoid })
                checks.Add(Guarded($"gumbel_topk_{relaxation.ToString().ToLowerInvariant()}", "f32", F32Bound, () => GumbelTopK(gpu.Device, relaxation)));
        if (device is IDistillationBackend distillation)
            checks.Add(Guarded("kd_lm_head_bf16_teacher", "f32", F32Bound, () => KdLmHeadBf16Teacher(distillation, bf16Device)));
        checks.Add(Guarded("attention_prefill_d128", "bf16", Bf16AttentionBound, () => AttentionBf16(reference, bf16Device, 0)));
        checks.Add(Guarded("attention_prefill_d128_chunked", "bf16", Bf16AttentionBound, () => AttentionBf16(reference, bf16Device, 37)));
        Models(reference, device, bf16Device, scratchFolder, checks);
        return checks;
    }

    /// <summary>
    /// bf16 prefill attention at head dim 128, against the fp32 CPU attention of the same (bf16-valued) inputs: the output
    /// is rounded to bf16 once (2^-9 relative), and the tensor-core kernel also rounds each probability to bf16 before
    /// P·V (at most 2^-9 of max|v| more); with a softmax this peaked, max|o| is a sizeable fraction of max|v|, so about
    /// 1% of the output scale. A wrong fragment, row or key moves outputs by O(1).
    /// </summary>
    public const double Bf16AttentionBound = 0.02;

    /// <summary>
    /// The inference attention's bf16 prefill with the Qwen3/Llama head size, which on sm_80 and newer runs the
    /// tensor-core kernel: 100 rows of 2 sequences (two 64-row blocks, the second partial) with GQA 4:2. With
    /// <paramref name="firstChunk"/> &gt; 0 the sequences arrive in two prefills, the second starting at that position
    /// (not a multiple of 64), so that within a warp some query rows see a fully masked key tile and others do not.
    /// </summary>
    static double AttentionBf16(IBackend reference, IBackend bf16Device, int firstChunk)
    {
        const int b = 2, t = 100, heads = 4, kv = 2, d = 128;
        const float scale = 0.3f;
        float[] Rounded(int seed, int count) => Random(seed, count, 1.0).Select(x => BFloat16.ToSingle(BFloat16.FromSingle(x))).ToArray();
        float[] q = Rounded(60, b * t * heads * d), k = Rounded(61, b * t * kv * d), v = Rounded(62, b * t * kv * d);
        float[] Run(IBackend backend)
        {
            var dt = backend.ActivationType;
            var owned = new List<Tensor>();
            Tensor Put(float[] values, params int[] shape)
            {
                var tensor = backend.Allocate(dt, shape);
                owned.Add(tensor);
                backend.Upload(values, tensor);
                return tensor;
            }
            // Positions [from, to) of every sequence of x [b·t, width], as a [b·(to − from), width] chunk.
            static float[] Chunk(float[] x, int width, int from, int to)
            {
                var chunk = new float[b * (to - from) * width];
                for (int s = 0; s < b; s++)
                    x.AsSpan((s * t + from) * width, (to - from) * width).CopyTo(chunk.AsSpan(s * (to - from) * width));
                return chunk;
            }
            try
            {
                var (kc, vc) = (Put(new float[b * t * kv * d], b, t, kv * d), Put(new float[b * t * kv * d], b, t, kv * d));
                var result = new float[b * t * heads * d];
                int[] bounds = firstChunk > 0 ? [0, firstChunk, t] : [0, t];
                for (int c = 0; c + 1 < bounds.Length; c++)
                {
                    int from = bounds[c], to = bounds[c + 1], n = to - from;
                    var output = Put(new float[b * n * heads * d], b * n, heads * d);
                    backend.Attention(Put(Chunk(q, heads * d, from, to), b * n, heads * d), Put(Chunk(k, kv * d, from, to), b * n, kv * d),
                        Put(Chunk(v, kv * d, from, to), b * n, kv * d), kc, vc, b, n, from, heads, kv, d, scale, output);
                    var values = new float[output.ElementCount];
                    backend.Download(output, values);
                    for (int s = 0; s < b; s++)
                        values.AsSpan(s * n * heads * d, n * heads * d).CopyTo(result.AsSpan((s * t + from) * heads * d));
                }
                return result;
            }
            finally
            {
                foreach (var tensor in owned) tensor.Dispose();
            }
        }
        return Error(Run(bf16Device), Run(reference));
    }

    /// <summary>
    /// The mask sampler (kernels/gumbel_topk.cu) against <see cref="CpuGumbelTopK"/>: hard masks (which must be equal, or
    /// the error is O(1)), relaxed masks and dL/dα, forward and backward, with the same Philox noise keys.
    /// </summary>
    static double GumbelTopK(IGpuDevice gpu, GumbelRelaxation relaxation)
    {
        const int samples = 24, layers = 40, keep = 29;
        const ulong seed = 31337;
        var spec = new GumbelTopKSpec(layers, keep, samples, 0.8f, seed, 12, relaxation);
        var logits = Random(90, layers, 1.0);
        var gradMask = Random(91, samples * layers, 1.0);
        int n = (int)spec.MaskElements;
        float[] hard = new float[n], soft = new float[n], grad = new float[layers];
        new CpuGumbelTopK().ForwardBackward(logits, spec, gradMask, hard, soft, grad);

        using var stream = gpu.CreateOwnedStream();
        var owned = new List<DeviceBuffer>();
        try
        {
            DevicePointer<float> Upload(float[] values)
            {
                var buffer = gpu.AllocateBuffer(values.Length * sizeof(float));
                owned.Add(buffer);
                gpu.CopyToDevice(buffer.As<float>(), values, stream.Handle);
                return buffer.As<float>();
            }
            var (dLogits, dGradMask) = (Upload(logits), Upload(gradMask));
            var (dHard, dSoft, dGrad) = (Upload(new float[n]), Upload(new float[n]), Upload(new float[layers]));
            var dWork = Upload(new float[GumbelTopKKernels.WorkspaceElements(samples, layers, keep)]);
            using var kernels = new GumbelTopKKernels(gpu);
            kernels.Forward(dLogits, dHard, dSoft, dWork, layers, keep, samples, seed, 12, 0.8f, relaxation, stream.Handle);
            kernels.Backward(dLogits, dGradMask, dWork, dGrad, layers, keep, samples, seed, 12, 0.8f, relaxation, stream.Handle);
            float[] Download(DevicePointer<float> pointer, int count)
            {
                var values = new float[count];
                gpu.CopyToHost<float>(values, pointer, stream.Handle);
                return values;
            }
            return new[] { Error(Download(dHard, n), hard), Error(Download(dSoft, n), soft), Error(Download(dGrad, layers), grad) }.Max();
        }
        finally
        {
            foreach (var buffer in owned) buffer.Dispose();
        }
    }

    static void Forward(Action<string, Func<Operands, float[][]>> check)
    {
        check("embedding", o =>
        {
            var table = o.Weight(1, DType.F32, 97, 64);
            var y = o.Zeros(23, 64);
            o.B.Embedding(table, Ids(23, 97, 2), y);
            return [o.Read(y)];
        });
        // A bf16 table under fp32 activations, as the trainer looks up a bf16 checkpoint's embedding: rows widened as
        // they are gathered (e3_embedding_bf16_f32), the same values as the CPU's bf16 table.
        check("embedding_bf16_table", o =>
        {
            var table = o.Weight(1, DType.BF16, 97, 64);
            var y = o.Zeros(23, 64);
            o.B.Embedding(table, Ids(23, 97, 2), y);
            return [o.Read(y)];
        });
        check("rmsnorm", o =>
        {
            var y = o.Zeros(19, 96);
            o.B.RmsNorm(o.Act(3, 19, 96), o.Weight(4, DType.F32, 96), 1e-6f, y);
            return [o.Read(y)];
        });
        check("add_rmsnorm", o =>
        {
            var (sum, y) = (o.Zeros(19, 96), o.Zeros(19, 96));
            o.B.AddRmsNorm(o.Act(5, 19, 96), o.Act(6, 19, 96), sum, o.Weight(7, DType.F32, 96), 1e-6f, y);
            return [o.Read(sum), o.Read(y)];
        });
        check("gated_residual", o =>
        {
            var h = o.Act(8, 13, 70);
            o.B.GatedResidual(h, o.Act(9, 13, 70), o.Act(10, 13, 70), 0.37f);
            return [o.Read(h)];
        });
        check("gated_residual_rmsnorm", o =>
        {
            var (h, y) = (o.Act(8, 13, 96), o.Zeros(13, 96));
            o.B.GatedResidualRmsNorm(h, o.Act(9, 13, 96), o.Act(10, 13, 96), 0.37f, o.Weight(7, DType.F32, 96), 1e-6f, y);
            return [o.Read(h), o.Read(y)];
        });
        foreach (var store in new[] { DType.F32, DType.BF16 })
            check($"matmul_{(store == DType.F32 ? "f32" : "bf16")}_weight", o =>
            {
                var y = o.Zeros(21, 72);
                o.B.MatMul(o.Act(11, 21, 80), o.Weight(12, store, 72, 80), o.Weight(13, DType.F32, 72), y);
                return [o.Read(y)];
            });
        check("head_norm_rope", o =>
        {
            var x = o.Act(14, 18, 64);
            o.B.HeadNormRope(x, 4, 16, o.Weight(15, DType.F32, 16), 1e-6f, 1e6f, 9, 5);
            return [o.Read(x)];
        });
        check("qk_norm_rope", o =>
        {
            var (q, k) = (o.Act(90, 18, 64), o.Act(91, 18, 32));
            o.B.QkNormRope(q, k, 4, 2, 16, o.Weight(92, DType.F32, 16), o.Weight(93, DType.F32, 16), 1e-6f, 1e6f, 9, 5);
            return [o.Read(q), o.Read(k)];
        });
        check("attention_prefill_decode", o =>
        {
            // Prefill 37 positions (across the 16- and 32-row tiles) into the caches, then one decode step at position 37.
            const int b = 2, t = 37, heads = 4, kv = 2, d = 32, cap = 40;
            var (kc, vc) = (o.Zeros(b, cap, kv * d), o.Zeros(b, cap, kv * d));
            var prefill = o.Zeros(b * t, heads * d);
            o.B.Attention(o.Act(16, b * t, heads * d), o.Act(17, b * t, kv * d), o.Act(18, b * t, kv * d), kc, vc, b, t, 0, heads, kv, d, 0.17f, prefill);
            var decode = o.Zeros(b, heads * d);
            o.B.Attention(o.Act(19, b, heads * d), o.Act(20, b, kv * d), o.Act(21, b, kv * d), kc, vc, b, 1, t, heads, kv, d, 0.17f, decode);
            return [o.Read(prefill), o.Read(decode)];
        });
        check("swiglu", o =>
        {
            var y = o.Zeros(17, 90);
            o.B.SwiGlu(o.Act(22, 17, 90), o.Act(23, 17, 90), y);
            return [o.Read(y)];
        });
        check("gather_rows", o =>
        {
            var y = o.Zeros(5, 33);
            o.B.GatherRows(o.Act(24, 11, 33), [10, 0, 3, 3, 7], y);
            return [o.Read(y)];
        });
    }

    static void Backward(Action<string, Func<Operands, float[][]>> check)
    {
        check("matmul_grads", o =>
        {
            var (dy, w, x) = (o.Act(30, 21, 72), o.Weight(31, DType.F32, 72, 80), o.Act(32, 21, 80));
            var dx = o.Act(33, 21, 80);
            o.T.MatMulInputGrad(dy, w, dx, accumulate: true);
            var (dw, db) = (o.Act(34, 72, 80), o.Act(35, 72));
            o.T.MatMulWeightGrad(x, dy, dw, db);
            return [o.Read(dx), o.Read(dw), o.Read(db)];
        });
        check("rmsnorm_backward", o =>
        {
            var (dx, dWeight) = (o.Zeros(19, 96), o.Zeros(96));
            o.T.RmsNormBackward(o.Act(36, 19, 96), o.Weight(37, DType.F32, 96), 1e-6f, o.Act(38, 19, 96), dx, false, dWeight);
            return [o.Read(dx), o.Read(dWeight)];
        });
        check("head_norm_rope_backward", o =>
        {
            var (grad, dNorm) = (o.Act(39, 18, 64), o.Zeros(16));
            o.T.HeadNormRopeBackward(o.Act(40, 18, 64), 4, 16, o.Weight(41, DType.F32, 16), 1e-6f, 1e6f, 9, 0, grad, dNorm);
            return [o.Read(grad), o.Read(dNorm)];
        });
        check("attention_train", o =>
        {
            const int b = 2, t = 37, heads = 4, kv = 2, d = 32;
            var (q, k, v) = (o.Act(42, b * t, heads * d), o.Act(43, b * t, kv * d), o.Act(44, b * t, kv * d));
            var (output, lse) = (o.Zeros(b * t, heads * d), o.Zeros(b * t, heads));
            o.T.AttentionForward(q, k, v, b, t, heads, kv, d, 0.17f, output, lse);
            var (dq, dk, dv) = (o.Zeros(b * t, heads * d), o.Zeros(b * t, kv * d), o.Zeros(b * t, kv * d));
            o.T.AttentionBackward(q, k, v, output, o.Act(45, b * t, heads * d), lse, b, t, heads, kv, d, 0.17f, dq, dk, dv);
            return [o.Read(output), o.Read(lse), o.Read(dq), o.Read(dk), o.Read(dv)];
        });
        check("swiglu_backward", o =>
        {
            var (dGate, dUp) = (o.Zeros(17, 90), o.Zeros(17, 90));
            o.T.SwiGluBackward(o.Act(46, 17, 90), o.Act(47, 17, 90), o.Act(48, 17, 90), dGate, dUp);
            return [o.Read(dGate), o.Read(dUp)];
        });
        check("gated_residual_backward", o =>
        {
            var (dh, dLayer) = (o.Zeros(13, 70), o.Zeros(13, 70));
            double dGate = o.T.GatedResidualBackward(o.Act(49, 13, 70), o.Act(50, 13, 70), o.Act(51, 13, 70), 0.37f, o.Act(52, 13, 70), dh, dLayer);
            return [[(float)dGate], o.Read(dh), o.Read(dLayer)];
        });
        check("embedding_backward", o =>
        {
            var table = o.Act(53, 31, 48);
            o.T.EmbeddingBackward(Ids(40, 31, 54), o.Act(55, 40, 48), table); // 40 ids over 31 rows: repeats
            return [o.Read(table)];
        });
    }

    /// <summary>The distillation loss fused with the LM head: the device's when it has one, else the host's.</summary>
    static float[][] KdLmHead(Operands o)
    {
        var p = KdProblem.Make(bf16Teacher: false);
        return o.B is IDistillationBackend onDevice ? p.OnDevice(onDevice, o, p.Teacher) : p.OnHost();
    }

    /// <summary>
    /// The fused loss as <c>e3 distill</c> runs it on a GPU: the teacher's logits are bf16 on the bf16 backend (its
    /// inference path), read there by the fp32 backend's kernels (e3_kd_teacher_bf16, e3_kd_dense_f32_bf16), against the
    /// host loss of the same bf16 values. Widening bf16 is exact, so the error is the fp32 pass's own: the fp32 bound.
    /// </summary>
    static double KdLmHeadBf16Teacher(IDistillationBackend device, IBackend bf16Device)
    {
        var p = KdProblem.Make(bf16Teacher: true);
        var want = p.OnHost();
        var logits = bf16Device.Allocate(DType.BF16, p.Rows, p.Vocab);
        using var teacher = BackendDenseTeacher.FromLogits(bf16Device, logits);
        if (!device.Reads(logits))
            throw new InvalidOperationException("the fp32 device backend cannot read the bf16 one's tensors: they are not on one device");
        bf16Device.Upload(p.Teacher.Float32.Span, logits);
        using var o = new Operands(device);
        var got = p.OnDevice(device, o, teacher);
        return got.Select((g, i) => Error(g, want[i])).Max();
    }

    /// <summary>One fused-loss problem (23 rows, hidden 48, vocab 777, τ = 2, λ = 0.75), its outputs as [loss], dHidden, dHead.</summary>
    sealed record KdProblem(int Rows, int HiddenSize, int Vocab, KdOptions Options, DenseTeacher Teacher, int[] Labels, float[] Hidden, float[] Head)
    {
        const long ChunkBytes = 4L * 777 * 5; // chunks of 5 rows, the last one partial

        /// <param name="bf16Teacher">Round the teacher's logits to bf16 values, as the inference path leaves them.</param>
        public static KdProblem Make(bool bf16Teacher)
        {
            const int rows = 23, hiddenSize = 48, vocab = 777;
            var teacher = Random(60, rows * vocab, 3.0);
            if (bf16Teacher) BFloat16.Round(teacher);
            return new KdProblem(rows, hiddenSize, vocab, new KdOptions { Temperature = 2, KdFraction = 0.75 }, new DenseTeacher(teacher, rows, vocab),
                Ids(rows, vocab, 61), Random(62, rows * hiddenSize, 1.0), Random(63, vocab * hiddenSize, 0.3));
        }

        public float[][] OnDevice(IDistillationBackend device, Operands o, KdTeacher teacher)
        {
            var (h, w, dh, dw) = (o.Upload(Hidden, Rows, HiddenSize), o.Upload(Head, Vocab, HiddenSize), o.Zeros(Rows, HiddenSize), o.Zeros(Vocab, HiddenSize));
            var result = BackendKdLmHead.Compute(device, h, w, teacher, Labels, Options, dh, dw, ChunkBytes);
            return [[(float)result.Loss.Loss], o.Read(dh), o.Read(dw)];
        }

        public float[][] OnHost()
        {
            var (dHidden, dHead) = (new float[Hidden.Length], new float[Head.Length]);
            var host = EntropyKdLmHead.Compute(Hidden, HiddenSize, Head, Vocab, Teacher, Labels, Options, dHidden, dHead, ChunkBytes);
            return [[(float)host.Loss.Loss], dHidden, dHead];
        }
    }

    /// <summary>The teacher cache's top-K: indices and log-probabilities, on the device when it selects them there.</summary>
    static (float[] Indices, float[] LogProbs) TopK(Operands o)
    {
        const int rows = 9, vocab = 1000, k = 10;
        var values = Random(70, rows * vocab, 4.0);
        var (indices, logProbs) = (new int[rows * k], new float[rows * k]);
        if (o.B is ITopKBackend onDevice) onDevice.TopKLogProbs(o.Upload(values, rows, vocab), indices, logProbs);
        else
            for (int r = 0; r < rows; r++)
                TopKSelector.Select(values.AsSpan(r * vocab, vocab), indices.AsSpan(r * k, k), logProbs.AsSpan(r * k, k));
        return (indices.Select(i => (float)i).ToArray(), logProbs);
    }

    /// <summary>
    /// Tokens drawn from the same logits with the same seeds (temperature, top-k, top-p, and the whole row): on the device
    /// when it draws there (kernels/sampling.cu), else by <see cref="TokenSampler"/> on the host.
    /// </summary>
    static float[] Sampled(Operands o)
    {
        const int rows = 6, vocab = 2000;
        var values = Random(71, rows * vocab, 4.0);
        var logits = o.Upload(values, rows, vocab);
        var drawn = new List<float>();
        foreach (var settings in new SamplingSettings[] { new(1f, 0, 1f, 5, 0), new(0.7f, 40, 0.9f, 6, 17), new(1.3f, 0, 0.8f, 7, 1 << 20) })
        {
            var ids = new int[rows];
            if (o.B is ISamplingBackend onDevice) onDevice.SampleRows(logits, settings, ids);
            else
                for (int r = 0; r < rows; r++) ids[r] = TokenSampler.Sample(values.AsSpan(r * vocab, vocab), settings, r);
            drawn.AddRange(ids.Select(i => (float)i));
        }
        return drawn.ToArray();
    }

    /// <summary>A random two-layer Qwen3 with a layer dropped: fp32 on the device, and bf16 activations against the fp32 CPU.</summary>
    static void Models(IBackend reference, IBackend device, IBackend bf16Device, string folder, List<ParityCheck> checks)
    {
        RandomModel.Write(new RandomModelSpec { Layers = 3, Hidden = 64, Heads = 4, KvHeads = 2, HeadDim = 16, Intermediate = 128, Vocab = 300, InitStd = 0.1f, Seed = 9 }, folder);
        var tokens = Ids(24, 300, 80);
        var mask = LayerMask.Dropping(3, [1]);
        float[] Logits(IBackend b)
        {
            using var model = DecoderModel.Load(folder, b);
            return model.Forward(tokens, mask);
        }
        var want = Logits(reference);
        checks.Add(Guarded("model_forward", "f32", F32Bound, () => Error(Logits(device), want)));
        checks.Add(Guarded("model_forward", "bf16", Bf16ModelBound, () => Error(Logits(bf16Device), want)));
    }

    /// <summary>
    /// Runs one check; an operation that throws (a launch the device refuses, say) is recorded as a failed check with
    /// its message, so that one broken kernel does not hide the others' results.
    /// </summary>
    internal static ParityCheck Guarded(string name, string dtype, double bound, Func<double> error)
    {
        try
        {
            return new ParityCheck(name, dtype, error(), bound);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new ParityCheck(name, dtype, double.NaN, bound, $"{e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>max |got − want| / max |want|; NaN when the lengths differ or a value is not finite.</summary>
    public static double Error(ReadOnlySpan<float> got, ReadOnlySpan<float> want)
    {
        if (got.Length != want.Length) return double.NaN;
        double diff = 0, scale = 0;
        for (int i = 0; i < want.Length; i++)
        {
            if (!float.IsFinite(got[i]) || !float.IsFinite(want[i])) return double.NaN;
            diff = Math.Max(diff, Math.Abs((double)got[i] - want[i]));
            scale = Math.Max(scale, Math.Abs((double)want[i]));
        }
        return scale > 0 ? diff / scale : diff;
    }

    static float[] Random(int seed, int count, double scale)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = (float)((random.NextDouble() * 2 - 1) * scale);
        return values;
    }

    static int[] Ids(int count, int range, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => random.Next(range)).ToArray();
    }

    /// <summary>Tensors made on one backend from seeded host values, disposed together.</summary>
    sealed class Operands(ITrainingBackend backend) : IDisposable
    {
        readonly List<Tensor> _owned = [];

        public IBackend B => backend;
        public ITrainingBackend T => backend;

        public Tensor Upload(float[] values, params int[] shape)
        {
            var t = Keep(backend.Allocate(DType.F32, shape));
            backend.Upload(values, t);
            return t;
        }

        public Tensor Act(int seed, params int[] shape) => Upload(Random(seed, shape.Aggregate(1, (a, b) => a * b), 1.0), shape);

        public Tensor Zeros(params int[] shape) => Keep(backend.Allocate(DType.F32, shape));

        /// <summary>A weight stored as <paramref name="store"/> (matrices only may be bf16), from raw fp32 values.</summary>
        public Tensor Weight(int seed, DType store, params int[] shape)
        {
            var values = Random(seed, shape.Aggregate(1, (a, b) => a * b), 0.5);
            return Keep(backend.Upload(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()), DType.F32, shape, shape.Length >= 2 ? store : DType.F32));
        }

        public float[] Read(Tensor t)
        {
            var values = new float[t.ElementCount];
            backend.Download(t, values);
            return values;
        }

        Tensor Keep(Tensor t)
        {
            _owned.Add(t);
            return t;
        }

        public void Dispose()
        {
            foreach (var t in _owned) t.Dispose();
        }
    }
}
