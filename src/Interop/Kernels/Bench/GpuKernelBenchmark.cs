using E3.Interop.Emulator;
using E3.Interop.Gpu;

namespace E3.Interop.Kernels.Bench;

/// <summary>
/// Times every forward kernel family, the projection GEMMs and the training backward kernels of one layer shape on an
/// <see cref="IGpuDevice"/>, together with the two roofs it compares them to: a device-to-device copy (bandwidth) and a
/// large bf16 GEMM (compute), both measured in the same run. Inference activations are bf16; the training kernels and
/// the Gumbel-TopK mask kernels are fp32. Inputs are filled with small constants: the kernels' work does not depend on
/// the values.
/// </summary>
internal sealed class GpuKernelBenchmark : IDisposable
{
    private const int Bf16Bytes = 2;
    private const uint Bf16Pair = 0x3C003C00u;   // two bf16 of 2^-7
    private const uint F32Small = 0x3C000000u;   // fp32 2^-7

    private readonly IGpuDevice device;
    private readonly OwnedStream stream;
    private readonly IBenchTimer timer;
    private readonly List<KernelMeasurement> results = [];
    private readonly int warmup, repeats;
    private readonly Action<string>? progress;
    private readonly DeviceBuffer? flush;
    private readonly long flushBytes;
    private byte flushValue;

    private GpuKernelBenchmark(IGpuDevice device, int warmup, int repeats, Action<string>? progress)
    {
        this.device = device;
        this.warmup = warmup;
        this.repeats = repeats;
        this.progress = progress;
        stream = device.CreateOwnedStream();
        // Events time what the GPU did; the emulator runs launches on the host, so the host clock is its truth.
        if (device is EmuGpuDevice)
        {
            timer = new MonotonicBenchTimer(stream.Synchronize);
        }
        else
        {
            flushBytes = FlushBytes(device.Info);
            if (flushBytes > 0) flush = device.AllocateBuffer(flushBytes);
            timer = new EventBenchTimer(device, stream.Handle, flush == null ? null : FlushL2, GpuWarmupMilliseconds);
        }
    }

    /// <summary>
    /// The least warm-up per measurement on a GPU (<see cref="BenchWarmup"/>): enough for the GPU's clocks to leave an
    /// idle state between measurements, and short enough that the two shapes' 90 measurements cost ~2 s of a lent
    /// machine. The host code that enqueues the runs needs no time of its own: e3 compiles it fully optimised on its first
    /// call (no tier-0 code; see E3.Cli.csproj). The emulator needs none: its kernels run in native code.
    /// </summary>
    public const double GpuWarmupMilliseconds = 25;

    /// <summary>
    /// Bytes written before each timed run on a GPU to evict the previous run's data from L2: four times the L2, so that
    /// no line of it survives (0 where the device reports no L2, as the emulator does).
    /// </summary>
    public static long FlushBytes(GpuDeviceInfo info) => 4L * Math.Max(0, info.L2CacheBytes);

    // A different byte each time, so that the write is never a repeat of the last one.
    private void FlushL2() => device.FillBytesAsync(flush!.Pointer, ++flushValue, flushBytes, stream.Handle);

    /// <summary>Runs the whole bench; <paramref name="deviceLabel"/> is the report's device name (cuda or emu).</summary>
    /// <param name="device">Where to run.</param>
    /// <param name="deviceLabel">"cuda" or "emu".</param>
    /// <param name="shape">Layer and workload sizes.</param>
    /// <param name="repeats">Timed runs per kernel (the median is reported); at least 1.</param>
    /// <param name="progress">Told the name of each kernel before it runs; may be null.</param>
    public static KernelBenchReport Run(IGpuDevice device, string deviceLabel, BenchShape shape, int repeats, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(shape);
        if (repeats < 1) throw new ArgumentOutOfRangeException(nameof(repeats), repeats, "--repeats must be >= 1");
        using var bench = new GpuKernelBenchmark(device, warmup: Math.Min(2, repeats), repeats, progress);
        var copy = bench.MeasureCopy(shape.CopyBytes);
        var gemm = bench.MeasureGemm("gemm", shape.GemmSize, shape.GemmSize, shape.GemmSize);
        bench.RowKernels(shape);
        bench.Attention(shape);
        bench.Projections(shape);
        bench.Distillation(shape);
        bench.Masks(shape);
        bench.Sampling(shape);
        bench.Training(shape);
        return new KernelBenchReport(deviceLabel, device.Info.Name, shape.Name, repeats, bench.timer.Kind, bench.timer.MinimumWarmupMilliseconds, bench.flushBytes, copy, gemm, bench.results);
    }

    private KernelMeasurement MeasureCopy(long bytes)
    {
        using var a = Buffer(bytes, F32Small);
        using var b = Buffer(bytes, 0);
        return Time("copy", "u8", new() { ["bytes"] = bytes }, KernelWork.Copy(bytes),
            () => device.CopyAsync(b.Pointer, a.Pointer, bytes, stream.Handle));
    }

    // A projection's GEMM: bf16 as inference runs it, or fp32 as training does, plain or with TF32 operands (--tf32).
    private KernelMeasurement MeasureGemm(string name, int m, int n, int k, GemmDataType type = GemmDataType.BF16, GemmCompute compute = GemmCompute.Fp32)
    {
        int bytes = type == GemmDataType.BF16 ? Bf16Bytes : sizeof(float);
        uint fill = type == GemmDataType.BF16 ? Bf16Pair : F32Small;
        using var x = Buffer((long)m * k * bytes, fill);
        using var w = Buffer((long)n * k * bytes, fill);
        using var y = Buffer((long)m * n * bytes, 0);
        var gemm = RowMajorGemm.Linear(x.Pointer, w.Pointer, y.Pointer, m, n, k, type, type, compute: compute);
        string dtype = type == GemmDataType.BF16 ? "bf16" : compute == GemmCompute.FastTf32 ? "tf32" : "f32";
        return Time(name, dtype, new() { ["m"] = m, ["n"] = n, ["k"] = k }, KernelWork.Gemm(m, n, k, bytes),
            () => device.Gemm(gemm, stream.Handle));
    }

    private void RowKernels(BenchShape s)
    {
        int t = s.PrefillTokens, h = s.Hidden;
        using var x = Buffer((long)t * h * Bf16Bytes, Bf16Pair);
        using var delta = Buffer((long)t * h * Bf16Bytes, Bf16Pair);
        using var sum = Buffer((long)t * h * Bf16Bytes, 0);
        using var y = Buffer((long)t * h * Bf16Bytes, 0);
        using var weight = Buffer((long)h * Bf16Bytes, Bf16Pair);
        using (var table = Buffer((long)s.Vocab * h * Bf16Bytes, Bf16Pair))
        using (var ids = Upload(TokenIds(t, s.Vocab)))
        using (var embedding = new EmbeddingKernels(device))
            Add("embedding", new() { ["tokens"] = t, ["dim"] = h }, KernelWork.Embedding(t, h, Bf16Bytes),
                () => embedding.Forward(table.As<Bf16>(), ids.As<int>(), y.As<Bf16>(), t, h, stream.Handle));
        using (var norm = new RmsNormKernels(device))
        {
            Add("rmsnorm", new() { ["rows"] = t, ["cols"] = h }, KernelWork.RmsNorm(t, h, Bf16Bytes),
                () => norm.Forward(x.As<Bf16>(), weight.As<Bf16>(), y.As<Bf16>(), t, h, 1e-6f, stream.Handle));
            Add("add_rmsnorm", new() { ["rows"] = t, ["cols"] = h }, KernelWork.AddRmsNorm(t, h, Bf16Bytes),
                () => norm.AddForward(x.As<Bf16>(), delta.As<Bf16>(), sum.As<Bf16>(), weight.As<Bf16>(), y.As<Bf16>(), t, h, 1e-6f, stream.Handle));
            // A layer's end as decoding runs it: the gated residual fused with the next layer's input norm.
            Add("gated_residual_rmsnorm", new() { ["rows"] = t, ["cols"] = h }, KernelWork.GatedResidualRmsNorm(t, h, Bf16Bytes),
                () => norm.GatedResidualForward(sum.As<Bf16>(), x.As<Bf16>(), delta.As<Bf16>(), 0.5f, weight.As<Bf16>(), y.As<Bf16>(), t, h, 1e-6f, stream.Handle));
        }
        using (var residual = new ResidualKernels(device))
            Add("gated_residual", new() { ["count"] = (long)t * h }, KernelWork.GatedResidual((long)t * h, Bf16Bytes),
                () => residual.Gated(sum.As<Bf16>(), x.As<Bf16>(), delta.As<Bf16>(), 0.5f, (long)t * h, stream.Handle));
        using (var q = Buffer((long)t * s.Heads * s.HeadDim * Bf16Bytes, Bf16Pair))
        using (var k = Buffer((long)t * s.KvHeads * s.HeadDim * Bf16Bytes, Bf16Pair))
        using (var qNorm = Buffer((long)s.HeadDim * Bf16Bytes, Bf16Pair))
        using (var kNorm = Buffer((long)s.HeadDim * Bf16Bytes, Bf16Pair))
        using (var rope = new RopeKernels(device))
        {
            var layout = new RopeLayout(t, s.Heads, s.HeadDim, 1e6f, t, 0);
            Add("head_norm_rope", new() { ["tokens"] = t, ["heads"] = s.Heads, ["head_dim"] = s.HeadDim },
                KernelWork.HeadNormRope(t, s.Heads, s.HeadDim, Bf16Bytes),
                () => rope.HeadNormRope(q.As<Bf16>(), qNorm.As<Bf16>(), 1e-6f, layout, stream.Handle));
            // As the decoder runs it: q and k in one launch, each with its norm weight.
            Add("qk_norm_rope", new() { ["tokens"] = t, ["heads"] = s.Heads, ["kv_heads"] = s.KvHeads, ["head_dim"] = s.HeadDim },
                KernelWork.QkNormRope(t, s.Heads, s.KvHeads, s.HeadDim, Bf16Bytes),
                () => rope.QkNormRope(q.As<Bf16>(), qNorm.As<Bf16>(), k.As<Bf16>(), kNorm.As<Bf16>(), s.KvHeads, 1e-6f, layout, stream.Handle));
        }
        long mlp = (long)t * s.Intermediate;
        using (var gate = Buffer(mlp * Bf16Bytes, Bf16Pair))
        using (var up = Buffer(mlp * Bf16Bytes, Bf16Pair))
        using (var act = Buffer(mlp * Bf16Bytes, 0))
        using (var swiglu = new SwiGluKernels(device))
            Add("swiglu", new() { ["count"] = mlp }, KernelWork.SwiGlu(mlp, Bf16Bytes),
                () => swiglu.Forward(gate.As<Bf16>(), up.As<Bf16>(), act.As<Bf16>(), mlp, stream.Handle));
    }

    private void Attention(BenchShape s)
    {
        using var kernels = new AttentionKernels(device);
        int qWidth = s.Heads * s.HeadDim, kvWidth = s.KvHeads * s.HeadDim;
        float scale = 1f / MathF.Sqrt(s.HeadDim);
        {
            int t = s.PrefillTokens;
            var layout = new AttentionLayout(1, t, 0, t, s.Heads, s.KvHeads, s.HeadDim, scale);
            using var q = Buffer((long)t * qWidth * Bf16Bytes, Bf16Pair);
            using var k = Buffer((long)t * kvWidth * Bf16Bytes, Bf16Pair);
            using var v = Buffer((long)t * kvWidth * Bf16Bytes, Bf16Pair);
            using var kc = Buffer((long)t * kvWidth * Bf16Bytes, 0);
            using var vc = Buffer((long)t * kvWidth * Bf16Bytes, 0);
            using var o = Buffer((long)t * qWidth * Bf16Bytes, 0);
            Dictionary<string, long> Shape() => new() { ["batch"] = 1, ["tokens"] = t, ["heads"] = s.Heads, ["kv_heads"] = s.KvHeads, ["head_dim"] = s.HeadDim };
            var work = KernelWork.AttentionPrefill(1, t, s.Heads, s.KvHeads, s.HeadDim, Bf16Bytes);
            Add("attention_prefill", Shape(), work,
                () => kernels.Forward(q.As<Bf16>(), k.As<Bf16>(), v.As<Bf16>(), kc.As<Bf16>(), vc.As<Bf16>(), o.As<Bf16>(), default, default, layout, stream.Handle));
            // Where the tensor-core kernel ran above, the portable one too, side by side (the same work, so the ratio of
            // their times is the tensor cores' gain).
            if (kernels.PrefillUsesTensorCores(layout))
            {
                using var portable = new AttentionKernels(device, tensorCores: false);
                Add("attention_prefill_portable", Shape(), work,
                    () => portable.Forward(q.As<Bf16>(), k.As<Bf16>(), v.As<Bf16>(), kc.As<Bf16>(), vc.As<Bf16>(), o.As<Bf16>(), default, default, layout, stream.Handle));
            }
        }
        {
            int b = s.DecodeBatch, context = s.DecodeContext;
            var layout = new AttentionLayout(b, 1, context - 1, context, s.Heads, s.KvHeads, s.HeadDim, scale);
            int splits = LaunchShapes.AttentionDecode(b, s.Heads, s.KvHeads, s.HeadDim, context, device.Info.MultiprocessorCount).Splits;
            using var q = Buffer((long)b * qWidth * Bf16Bytes, Bf16Pair);
            using var k = Buffer((long)b * kvWidth * Bf16Bytes, Bf16Pair);
            using var v = Buffer((long)b * kvWidth * Bf16Bytes, Bf16Pair);
            using var kc = Buffer((long)b * context * kvWidth * Bf16Bytes, Bf16Pair);
            using var vc = Buffer((long)b * context * kvWidth * Bf16Bytes, Bf16Pair);
            using var o = Buffer((long)b * qWidth * Bf16Bytes, 0);
            using var work = Buffer(AttentionKernels.WorkspaceFloats(layout) * sizeof(float), 0);
            Add("attention_decode", new() { ["batch"] = b, ["context"] = context, ["heads"] = s.Heads, ["kv_heads"] = s.KvHeads, ["head_dim"] = s.HeadDim, ["splits"] = splits },
                KernelWork.AttentionDecode(b, context, s.Heads, s.KvHeads, s.HeadDim, splits, Bf16Bytes),
                () => kernels.Forward(q.As<Bf16>(), k.As<Bf16>(), v.As<Bf16>(), kc.As<Bf16>(), vc.As<Bf16>(), o.As<Bf16>(), default, work.As<float>(), layout, stream.Handle));
        }
    }

    private void Projections(BenchShape s)
    {
        int t = s.PrefillTokens, h = s.Hidden, q = s.Heads * s.HeadDim, kv = s.KvHeads * s.HeadDim;
        results.Add(MeasureGemm("gemm_q_proj", t, q, h));
        results.Add(MeasureGemm("gemm_kv_proj", t, kv, h));
        results.Add(MeasureGemm("gemm_o_proj", t, h, q));
        results.Add(MeasureGemm("gemm_gate_up_proj", t, s.Intermediate, h));
        results.Add(MeasureGemm("gemm_down_proj", t, h, s.Intermediate));
        results.Add(MeasureGemm("gemm_lm_head", t, s.Vocab, h));
        results.Add(MeasureGemm("gemm_lm_head_decode", s.DecodeBatch, s.Vocab, h));
    }

    private void Distillation(BenchShape s)
    {
        int rows = s.KdRows, vocab = s.Vocab, k = s.KdTopK;
        using var kd = new EntropyKdKernels(device);
        using var student = Buffer((long)rows * vocab * Bf16Bytes, Bf16Pair);
        using var teacher = Buffer((long)rows * vocab * Bf16Bytes, Bf16Pair);
        using var perRow = Buffer(7L * rows * sizeof(float), F32Small);
        using var labels = Buffer((long)rows * sizeof(int), uint.MaxValue); // -1: a valid row without a CE target
        var rowVector = perRow.As<float>();
        var stats = new KdTeacherStatistics(rowVector, rowVector.Offset(rows), rowVector.Offset(2L * rows));
        var settings = new KdStudentRows(rowVector.Offset(3L * rows), labels.As<int>(), 0f, 1f, false, rowVector.Offset(4L * rows), rowVector.Offset(5L * rows));
        var shape = new Dictionary<string, long> { ["rows"] = rows, ["vocab"] = vocab };
        Add("kd_teacher", shape, KernelWork.KdTeacher(rows, vocab, Bf16Bytes),
            () => kd.TeacherPass(teacher.As<Bf16>(), vocab, rows, vocab, 1f, stats, stream.Handle));
        // The student pass overwrites its logits with the gradient; later repeats run on those values, same work.
        Add("kd_dense", shape, KernelWork.KdDense(rows, vocab, Bf16Bytes),
            () => kd.Dense(student.As<Bf16>(), vocab, teacher.As<Bf16>(), vocab, rows, vocab, stats, settings, stream.Handle));
        // As e3 distill runs it on a GPU: the trainer's fp32 chunk of logits against the bf16 teacher's.
        using (var studentF32 = Buffer((long)rows * vocab * sizeof(float), F32Small))
            Add("kd_dense_f32_bf16", shape, KernelWork.KdDense(rows, vocab, sizeof(float), Bf16Bytes),
                () => kd.Dense(studentF32.As<float>(), vocab, teacher.As<Bf16>(), vocab, rows, vocab, stats, settings, stream.Handle), dtype: "f32/bf16");
        using var indices = Upload(Enumerable.Range(0, rows * k).Select(i => i % k * 37 % vocab).ToArray());
        using var logp = Buffer((long)rows * (k + 1) * sizeof(float), BitConverter.SingleToUInt32Bits(-MathF.Log(k + 1)));
        Add("kd_sparse", new() { ["rows"] = rows, ["vocab"] = vocab, ["top_k"] = k }, KernelWork.KdSparse(rows, vocab, k, Bf16Bytes),
            () => kd.Sparse(student.As<Bf16>(), vocab, rows, vocab, indices.As<int>(), logp.As<float>(), k, settings, stream.Handle));
    }

    private void Masks(BenchShape s)
    {
        int samples = s.GumbelSamples, layers = s.GumbelLayers, keep = s.GumbelKeep;
        long mask = (long)samples * layers;
        using var gumbel = new GumbelTopKKernels(device);
        using var logits = Buffer(layers * sizeof(float), F32Small);
        using var gradMask = Buffer(mask * sizeof(float), F32Small);
        using var hard = Buffer(mask * sizeof(float), 0);
        using var soft = Buffer(mask * sizeof(float), 0);
        using var work = Buffer(GumbelTopKKernels.WorkspaceElements(samples, layers, keep) * sizeof(float), 0);
        using var grad = Buffer(layers * sizeof(float), 0);
        Add("gumbel_topk_fwd_bwd", new() { ["samples"] = samples, ["layers"] = layers, ["keep"] = keep }, KernelWork.GumbelTopK(samples, layers, keep),
            () => gumbel.ForwardBackward(logits.As<float>(), gradMask.As<float>(), hard.As<float>(), soft.As<float>(), work.As<float>(), grad.As<float>(),
                layers, keep, samples, 1, 0, 0.5f, GumbelRelaxation.SoftTopK, stream.Handle), dtype: "f32");
    }

    private void Sampling(BenchShape s)
    {
        int rows = s.DecodeBatch, vocab = s.Vocab;
        using var sampling = new SamplingKernels(device);
        using var logits = Buffer((long)rows * vocab * Bf16Bytes, Bf16Pair);
        using var ids = Buffer((long)rows * sizeof(int), 0);
        Add("argmax", new() { ["rows"] = rows, ["vocab"] = vocab }, KernelWork.ArgMax(rows, vocab, Bf16Bytes),
            () => sampling.ArgMax(logits.As<Bf16>(), vocab, ids.As<int>(), rows, vocab, stream.Handle));
        // The teacher cache's selection: one sequence of prefill rows, K entries each.
        int cacheRows = s.KdRows, k = Math.Min(s.KdTopK, SamplingKernels.MaxTopK);
        using var cacheLogits = Buffer((long)cacheRows * vocab * Bf16Bytes, Bf16Pair);
        using var cacheIds = Buffer((long)cacheRows * k * sizeof(int), 0);
        using var cacheLogProbs = Buffer((long)cacheRows * k * sizeof(float), 0);
        Add("topk_logprobs", new() { ["rows"] = cacheRows, ["vocab"] = vocab, ["k"] = k }, KernelWork.TopKLogProbs(cacheRows, vocab, k, Bf16Bytes),
            () => sampling.TopKLogProbs(cacheLogits.As<Bf16>(), vocab, cacheIds.As<int>(), cacheLogProbs.As<float>(), cacheRows, vocab, k, stream.Handle));
    }

    /// <summary>The training projection's GEMM and the backward kernels of training (fp32 activations and gradients) at the prefill length.</summary>
    private void Training(BenchShape s)
    {
        int t = s.PrefillTokens, h = s.Hidden, qWidth = s.Heads * s.HeadDim, kvWidth = s.KvHeads * s.HeadDim;
        results.Add(MeasureGemm("gemm_gate_up_proj_f32", t, s.Intermediate, h, GemmDataType.F32));
        results.Add(MeasureGemm("gemm_gate_up_proj_tf32", t, s.Intermediate, h, GemmDataType.F32, GemmCompute.FastTf32));
        var layout = new AttentionLayout(1, t, 0, t, s.Heads, s.KvHeads, s.HeadDim, 1f / MathF.Sqrt(s.HeadDim));
        var attentionShape = new Dictionary<string, long> { ["batch"] = 1, ["tokens"] = t, ["heads"] = s.Heads, ["kv_heads"] = s.KvHeads, ["head_dim"] = s.HeadDim };
        using (var attention = new AttentionKernels(device))
        using (var q = Buffer((long)t * qWidth * sizeof(float), F32Small))
        using (var k = Buffer((long)t * kvWidth * sizeof(float), F32Small))
        using (var v = Buffer((long)t * kvWidth * sizeof(float), F32Small))
        using (var o = Buffer((long)t * qWidth * sizeof(float), 0))
        using (var dO = Buffer((long)t * qWidth * sizeof(float), F32Small))
        using (var lse = Buffer((long)t * s.Heads * sizeof(float), 0))
        using (var delta = Buffer((long)t * s.Heads * sizeof(float), 0))
        using (var dq = Buffer((long)t * qWidth * sizeof(float), 0))
        using (var dk = Buffer((long)t * kvWidth * sizeof(float), 0))
        using (var dv = Buffer((long)t * kvWidth * sizeof(float), 0))
        {
            Add("attention_train_forward", attentionShape, KernelWork.AttentionTrainForward(1, t, s.Heads, s.KvHeads, s.HeadDim),
                () => attention.TrainingForward(q.As<float>(), k.As<float>(), v.As<float>(), o.As<float>(), lse.As<float>(), layout, stream.Handle), dtype: "f32");
            Add("attention_backward", attentionShape, KernelWork.AttentionBackward(1, t, s.Heads, s.KvHeads, s.HeadDim),
                () => attention.Backward(q.As<float>(), k.As<float>(), v.As<float>(), o.As<float>(), dO.As<float>(), lse.As<float>(), delta.As<float>(),
                    dq.As<float>(), dk.As<float>(), dv.As<float>(), layout, stream.Handle), dtype: "f32");
        }
        long rowsShape = (long)t * h;
        using (var x = Buffer(rowsShape * sizeof(float), F32Small))
        using (var dy = Buffer(rowsShape * sizeof(float), F32Small))
        using (var dx = Buffer(rowsShape * sizeof(float), 0))
        using (var terms = Buffer(rowsShape * sizeof(float), 0))
        using (var weight = Buffer((long)h * sizeof(float), F32Small))
        using (var dWeight = Buffer((long)h * sizeof(float), 0))
        using (var norm = new RmsNormKernels(device))
        using (var rows = new RowKernels(device))
            Add("rmsnorm_backward", new() { ["rows"] = t, ["cols"] = h }, KernelWork.RmsNormBackward(t, h), () =>
            {
                norm.BackwardRows(x.As<float>(), weight.As<float>(), dy.As<float>(), dx.As<float>(), terms.As<float>(), t, h, 1e-6f, false, stream.Handle);
                rows.ColumnSum(terms.As<float>(), dWeight.As<float>(), t, h, stream.Handle);
            }, dtype: "f32");
        long mlp = (long)t * s.Intermediate;
        using (var gate = Buffer(mlp * sizeof(float), F32Small))
        using (var up = Buffer(mlp * sizeof(float), F32Small))
        using (var dAct = Buffer(mlp * sizeof(float), F32Small))
        using (var dGate = Buffer(mlp * sizeof(float), 0))
        using (var dUp = Buffer(mlp * sizeof(float), 0))
        using (var swiglu = new SwiGluKernels(device))
            Add("swiglu_backward", new() { ["count"] = mlp }, KernelWork.SwiGluBackward(mlp),
                () => swiglu.Backward(gate.As<float>(), up.As<float>(), dAct.As<float>(), dGate.As<float>(), dUp.As<float>(), mlp, stream.Handle), dtype: "f32");
        using (var hs = Buffer(rowsShape * sizeof(float), F32Small))
        using (var a = Buffer(rowsShape * sizeof(float), F32Small))
        using (var m = Buffer(rowsShape * sizeof(float), F32Small))
        using (var dOut = Buffer(rowsShape * sizeof(float), F32Small))
        using (var dh = Buffer(rowsShape * sizeof(float), 0))
        using (var dLayer = Buffer(rowsShape * sizeof(float), 0))
        using (var partials = Buffer(2L * ResidualKernels.MaxBackwardBlocks * sizeof(float), 0))
        using (var residual = new ResidualKernels(device))
            Add("gated_residual_backward", new() { ["count"] = rowsShape }, KernelWork.GatedResidualBackward(rowsShape),
                () => residual.Backward(hs.As<float>(), a.As<float>(), m.As<float>(), dOut.As<float>(), dh.As<float>(), dLayer.As<float>(), partials.As<float>(),
                    0.5f, rowsShape, stream.Handle), dtype: "f32");
        // One MLP projection's bf16 weight widened to fp32, as the trainer's backend does at every use of a matrix.
        long projection = (long)s.Intermediate * h;
        using (var bf16 = Buffer(projection * Bf16Bytes, Bf16Pair))
        using (var f32 = Buffer(projection * sizeof(float), 0))
        using (var convert = new ConvertKernels(device))
            Add("convert_bf16_f32", new() { ["count"] = projection }, KernelWork.Widen(projection),
                () => convert.ToF32(bf16.As<Bf16>(), f32.As<float>(), projection, stream.Handle));
        var ids = TokenIds(t, s.Vocab);
        // The trainer's lookup of a bf16 checkpoint's embedding: rows widened to fp32 as they are gathered.
        using (var bf16Table = Buffer((long)s.Vocab * h * Bf16Bytes, Bf16Pair))
        using (var idBuffer = Upload(ids))
        using (var rowsOut = Buffer(rowsShape * sizeof(float), 0))
        using (var embedding = new EmbeddingKernels(device))
            Add("embedding_bf16_f32", new() { ["tokens"] = t, ["dim"] = h }, KernelWork.EmbeddingWidened(t, h),
                () => embedding.Forward(bf16Table.As<Bf16>(), idBuffer.As<int>(), rowsOut.As<float>(), t, h, stream.Handle), dtype: "bf16/f32");
        var (plan, unique) = EmbeddingKernels.GroupTokens(ids);
        using (var dEmbedding = Buffer(rowsShape * sizeof(float), F32Small))
        using (var planBuffer = Upload(plan))
        using (var table = Buffer((long)s.Vocab * h * sizeof(float), 0))
        using (var embedding = new EmbeddingKernels(device))
            Add("embedding_backward", new() { ["tokens"] = t, ["unique"] = unique, ["dim"] = h }, KernelWork.EmbeddingBackward(t, unique, h),
                () => embedding.BackwardGrouped(dEmbedding.As<float>(), planBuffer.As<int>(), table.As<float>(), unique, h, stream.Handle), dtype: "f32");
    }

    /// <summary>Token ids spread over the vocabulary (a prime stride), as the embedding kernels see them.</summary>
    private static int[] TokenIds(int tokens, int vocab) => Enumerable.Range(0, tokens).Select(i => (int)((long)i * 7919 % vocab)).ToArray();

    private void Add(string name, Dictionary<string, long> shape, KernelWork work, Action launch, string dtype = "bf16") =>
        results.Add(Time(name, dtype, shape, work, launch));

    private KernelMeasurement Time(string name, string dtype, Dictionary<string, long> shape, KernelWork work, Action launch)
    {
        progress?.Invoke(name);
        double ms = timer.MedianMilliseconds(launch, warmup, repeats);
        return new KernelMeasurement(name, dtype, shape, work, ms);
    }

    // Sizes are rounded up to whole 32-bit words so that one word pattern fills them.
    private DeviceBuffer Buffer(long bytes, uint fillWord)
    {
        long words = (bytes + 3) / 4;
        var buffer = device.AllocateBuffer(words * 4);
        device.FillWordsAsync(buffer.Pointer, fillWord, words, stream.Handle);
        return buffer;
    }

    private DeviceBuffer Upload(int[] values)
    {
        var buffer = device.AllocateBuffer((long)values.Length * sizeof(int));
        device.CopyToDevice(buffer.As<int>(), values, stream.Handle);
        return buffer;
    }

    /// <summary>Waits for the stream, then releases the timer's events and the stream.</summary>
    public void Dispose()
    {
        stream.Synchronize();
        (timer as IDisposable)?.Dispose();
        flush?.Dispose();
        stream.Dispose();
    }
}
