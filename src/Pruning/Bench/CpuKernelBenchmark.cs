using E3.Backends;
using E3.Backends.Cpu;
using E3.Interop.Kernels;
using E3.Interop.Kernels.Bench;
using E3.Model.Decoder;
using E3.Pruning.Distillation;
using E3.Pruning.Masking;

namespace E3.Pruning.Bench;

/// <summary>
/// The CPU backend's equivalents of the GPU kernels (norms, SwiGLU, RoPE, attention, the projection GEMMs, the fused
/// KD loss, Gumbel-TopK and argmax), timed with the monotonic clock and reported exactly like
/// <see cref="GpuKernelBenchmark"/>: the roofs are a large memory copy and a large fp32 GEMM of the same backend.
/// Activations are fp32, as the CPU backend computes.
/// </summary>
internal static class CpuKernelBenchmark
{
    private const int F32Bytes = 4;

    /// <summary>
    /// The least warm-up per measurement (<see cref="BenchWarmup"/>): the CPU kernels are .NET code, which the JIT
    /// promotes out of tier 0 only after 30 calls and 100 ms without new compilations.
    /// </summary>
    public const double WarmupMilliseconds = 250;
    private const float Small = 1f / 128;

    /// <summary>Runs the bench on a <see cref="CpuBackend"/> with <paramref name="threads"/> threads (0 = all cores).</summary>
    public static KernelBenchReport Run(BenchShape shape, int repeats, int threads, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (repeats < 1) throw new ArgumentOutOfRangeException(nameof(repeats), repeats, "--repeats must be >= 1");
        using var backend = new CpuBackend(threads);
        var timer = new MonotonicBenchTimer(minimumWarmupMilliseconds: WarmupMilliseconds);
        int warmup = Math.Min(2, repeats);
        var results = new List<KernelMeasurement>();
        KernelMeasurement Time(string name, Dictionary<string, long> dims, KernelWork work, Action run)
        {
            progress?.Invoke(name);
            return new KernelMeasurement(name, "f32", dims, work, timer.MedianMilliseconds(run, warmup, repeats));
        }
        void Add(string name, Dictionary<string, long> dims, KernelWork work, Action run) => results.Add(Time(name, dims, work, run));

        var copy = MeasureCopy(shape.CopyBytes, Time);
        var gemm = MeasureGemm(backend, "gemm", shape.GemmSize, shape.GemmSize, shape.GemmSize, Time);
        RowOps(backend, shape, Add);
        Attention(backend, shape, Add);
        foreach (var (name, m, n, k) in Projections(shape))
            results.Add(MeasureGemm(backend, name, m, n, k, Time));
        Losses(shape, threads, Add);
        return new KernelBenchReport("cpu", $"{Environment.ProcessorCount}-core x86-64, {backend.Threads} threads", shape.Name, repeats, timer.Kind, timer.MinimumWarmupMilliseconds, 0,
            copy, gemm, results);
    }

    private delegate KernelMeasurement Timing(string name, Dictionary<string, long> dims, KernelWork work, Action run);

    private delegate void Adding(string name, Dictionary<string, long> dims, KernelWork work, Action run);

    /// <summary>The projection GEMMs of one layer plus the LM head (prefill and one decode step): name, M, N, K.</summary>
    private static IEnumerable<(string Name, int M, int N, int K)> Projections(BenchShape s)
    {
        int t = s.PrefillTokens, h = s.Hidden, q = s.Heads * s.HeadDim, kv = s.KvHeads * s.HeadDim;
        yield return ("gemm_q_proj", t, q, h);
        yield return ("gemm_kv_proj", t, kv, h);
        yield return ("gemm_o_proj", t, h, q);
        yield return ("gemm_gate_up_proj", t, s.Intermediate, h);
        yield return ("gemm_down_proj", t, h, s.Intermediate);
        yield return ("gemm_lm_head", t, s.Vocab, h);
        yield return ("gemm_lm_head_decode", s.DecodeBatch, s.Vocab, h);
    }

    private static KernelMeasurement MeasureCopy(long bytes, Timing time)
    {
        var source = new byte[bytes];
        var target = new byte[bytes];
        source.AsSpan().Fill(1);
        return time("copy", new() { ["bytes"] = bytes }, KernelWork.Copy(bytes), () => source.AsSpan().CopyTo(target));
    }

    private static KernelMeasurement MeasureGemm(CpuBackend b, string name, int m, int n, int k, Timing time)
    {
        using var x = Filled(b, m, k);
        using var w = Filled(b, n, k);
        using var y = b.Allocate(DType.F32, m, n);
        return time(name, new() { ["m"] = m, ["n"] = n, ["k"] = k }, KernelWork.Gemm(m, n, k, F32Bytes), () => b.MatMul(x, w, null, y));
    }

    private static void RowOps(CpuBackend b, BenchShape s, Adding add)
    {
        int t = s.PrefillTokens, h = s.Hidden;
        using var x = Filled(b, t, h);
        using var delta = Filled(b, t, h);
        using var sum = b.Allocate(DType.F32, t, h);
        using var y = b.Allocate(DType.F32, t, h);
        using var weight = Filled(b, h);
        add("rmsnorm", new() { ["rows"] = t, ["cols"] = h }, KernelWork.RmsNorm(t, h, F32Bytes), () => b.RmsNorm(x, weight, 1e-6f, y));
        add("add_rmsnorm", new() { ["rows"] = t, ["cols"] = h }, KernelWork.AddRmsNorm(t, h, F32Bytes), () => b.AddRmsNorm(x, delta, sum, weight, 1e-6f, y));
        add("gated_residual", new() { ["count"] = (long)t * h }, KernelWork.GatedResidual((long)t * h, F32Bytes), () => b.GatedResidual(sum, x, delta, 0.5f));
        using (var q = Filled(b, t, s.Heads * s.HeadDim))
        using (var qNorm = Filled(b, s.HeadDim))
            add("head_norm_rope", new() { ["tokens"] = t, ["heads"] = s.Heads, ["head_dim"] = s.HeadDim }, KernelWork.HeadNormRope(t, s.Heads, s.HeadDim, F32Bytes),
                () => b.HeadNormRope(q, s.Heads, s.HeadDim, qNorm, 1e-6f, 1e6f, t, 0));
        using var gate = Filled(b, t, s.Intermediate);
        using var up = Filled(b, t, s.Intermediate);
        using var act = b.Allocate(DType.F32, t, s.Intermediate);
        long count = (long)t * s.Intermediate;
        add("swiglu", new() { ["count"] = count }, KernelWork.SwiGlu(count, F32Bytes), () => b.SwiGlu(gate, up, act));
    }

    private static void Attention(CpuBackend b, BenchShape s, Adding add)
    {
        int qw = s.Heads * s.HeadDim, kvw = s.KvHeads * s.HeadDim;
        float scale = 1f / MathF.Sqrt(s.HeadDim);
        {
            int t = s.PrefillTokens;
            using var q = Filled(b, t, qw);
            using var k = Filled(b, t, kvw);
            using var v = Filled(b, t, kvw);
            using var kc = b.Allocate(DType.F32, 1, t, kvw);
            using var vc = b.Allocate(DType.F32, 1, t, kvw);
            using var o = b.Allocate(DType.F32, t, qw);
            add("attention_prefill", new() { ["batch"] = 1, ["tokens"] = t, ["heads"] = s.Heads, ["kv_heads"] = s.KvHeads, ["head_dim"] = s.HeadDim },
                KernelWork.AttentionPrefill(1, t, s.Heads, s.KvHeads, s.HeadDim, F32Bytes),
                () => b.Attention(q, k, v, kc, vc, 1, t, 0, s.Heads, s.KvHeads, s.HeadDim, scale, o));
        }
        {
            int batch = s.DecodeBatch, context = s.DecodeContext;
            using var q = Filled(b, batch, qw);
            using var k = Filled(b, batch, kvw);
            using var v = Filled(b, batch, kvw);
            using var kc = Filled(b, batch, context, kvw);
            using var vc = Filled(b, batch, context, kvw);
            using var o = b.Allocate(DType.F32, batch, qw);
            // The CPU backend has no split-K partials: splits = 0 drops that term of the formula.
            add("attention_decode", new() { ["batch"] = batch, ["context"] = context, ["heads"] = s.Heads, ["kv_heads"] = s.KvHeads, ["head_dim"] = s.HeadDim, ["splits"] = 0 },
                KernelWork.AttentionDecode(batch, context, s.Heads, s.KvHeads, s.HeadDim, 0, F32Bytes),
                () => b.Attention(q, k, v, kc, vc, batch, 1, context - 1, s.Heads, s.KvHeads, s.HeadDim, scale, o));
        }
    }

    private static void Losses(BenchShape s, int threads, Adding add)
    {
        int rows = s.KdRows, vocab = s.Vocab;
        var teacherLogits = new float[(long)rows * vocab];
        var student = new float[(long)rows * vocab];
        teacherLogits.AsSpan().Fill(Small);
        var teacher = new DenseTeacher(teacherLogits, rows, vocab);
        var labels = Enumerable.Range(0, rows).Select(i => i % vocab).ToArray();
        // One call is the teacher pass and the fused student pass, so its work is the sum of the two kernels'.
        var teacherWork = KernelWork.KdTeacher(rows, vocab, F32Bytes);
        var denseWork = KernelWork.KdDense(rows, vocab, F32Bytes);
        // The loss overwrites the student logits with the gradient; later repeats run on those values, same work.
        student.AsSpan().Fill(Small);
        add("kd_loss_dense", new() { ["rows"] = rows, ["vocab"] = vocab }, new KernelWork(teacherWork.Bytes + denseWork.Bytes, teacherWork.Flops + denseWork.Flops),
            () => EntropyKdLoss.Compute(student, vocab, teacher, labels, new KdOptions()));

        int samples = s.GumbelSamples, layers = s.GumbelLayers, keep = s.GumbelKeep;
        var gumbel = new CpuGumbelTopK(threads > 0 ? threads : -1);
        var spec = new GumbelTopKSpec(layers, keep, samples, 0.5f, 1, 0, GumbelRelaxation.SoftTopK);
        var logits = Enumerable.Repeat(Small, layers).ToArray();
        var gradMask = Enumerable.Repeat(Small, samples * layers).ToArray();
        var hard = new float[samples * layers];
        var soft = new float[samples * layers];
        var grad = new float[layers];
        add("gumbel_topk_fwd_bwd", new() { ["samples"] = samples, ["layers"] = layers, ["keep"] = keep }, KernelWork.GumbelTopK(samples, layers, keep),
            () => gumbel.ForwardBackward(logits, spec, gradMask, hard, soft, grad));

        int argRows = s.DecodeBatch;
        var values = Enumerable.Range(0, argRows * vocab).Select(i => (float)(i % 977)).ToArray();
        add("argmax", new() { ["rows"] = argRows, ["vocab"] = vocab }, KernelWork.ArgMax(argRows, vocab, F32Bytes),
            () =>
            {
                for (int r = 0; r < argRows; r++) GreedyGenerator.ArgMax(values.AsSpan(r * vocab, vocab));
            });
    }

    private static Tensor Filled(CpuBackend b, params int[] shape)
    {
        var t = b.Allocate(DType.F32, shape);
        var values = new float[t.ElementCount];
        values.AsSpan().Fill(Small);
        b.Upload(values, t);
        return t;
    }
}
