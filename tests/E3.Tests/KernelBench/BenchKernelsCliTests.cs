using System.Text.Json;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.KernelBench;

/// <summary>
/// <c>e3 bench kernels</c> through the real executable: the emulator run on the small shape (what CI can afford) and
/// the CPU backend run, checked against the documented JSON schema, with bytes and FLOPs recomputed here from each
/// kernel's reported shape by the formulas the schema documents.
/// </summary>
public sealed class BenchKernelsCliTests
{
    static readonly string[] GpuKernels =
    [
        "embedding", "rmsnorm", "add_rmsnorm", "gated_residual_rmsnorm", "gated_residual", "head_norm_rope", "qk_norm_rope", "swiglu", "attention_prefill", "attention_decode",
        "gemm_q_proj", "gemm_kv_proj", "gemm_o_proj", "gemm_gate_up_proj", "gemm_down_proj", "gemm_lm_head", "gemm_lm_head_decode",
        "kd_teacher", "kd_dense", "kd_dense_f32_bf16", "kd_sparse", "gumbel_topk_fwd_bwd", "argmax", "topk_logprobs",
        "gemm_gate_up_proj_f32", "gemm_gate_up_proj_tf32", "attention_train_forward", "attention_backward", "rmsnorm_backward", "swiglu_backward", "gated_residual_backward", "convert_bf16_f32",
        "embedding_bf16_f32", "embedding_backward",
    ];

    [Fact]
    public void EmulatorRunReportsEveryKernelWithItsFormulas()
    {
        using var dir = new TempDir("e3-kbench");
        string output = dir["bench.json"];
        var r = CliProcess.Run("bench", "kernels", "--device", "emu", "--json", "--repeats", "1", "--out", output);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal("", r.Stdout); // --out takes the report
        Assert.Equal([output], Directory.GetFiles(dir.Path)); // written by rename: no temp file left behind
        using var json = JsonDocument.Parse(File.ReadAllText(output));
        var root = json.RootElement;
        Assert.Equal("emu", root.GetProperty("device").GetString());
        Assert.Equal("small", root.GetProperty("shape").GetString()); // the emulator's default shape
        Assert.Equal("monotonic-clock", root.GetProperty("timer").GetString());
        Assert.Equal(0, root.GetProperty("l2_flush_bytes").GetInt64()); // the emulator reports no L2 to flush
        Assert.Equal(0, root.GetProperty("warmup_ms").GetDouble()); // native kernels: nothing for the JIT to settle
        Assert.Equal(1, root.GetProperty("repeats").GetInt32());
        var kernels = CheckSchema(root);
        Assert.Equal(GpuKernels, kernels.Keys);

        // rmsnorm over bf16 rows: x read and y written (2·rows·cols), the weight once (cols), 2 bytes each; 4 FLOPs per element.
        var norm = kernels["rmsnorm"];
        long rows = Dim(norm, "rows"), cols = Dim(norm, "cols");
        Assert.Equal((rows, cols), (64L, 256L));
        Assert.Equal((2 * rows * cols + cols) * 2, norm.GetProperty("bytes").GetInt64());
        Assert.Equal(4 * rows * cols, norm.GetProperty("flops").GetInt64());
        // The fused layer end: h, a and m read, h and y written (5·rows·cols), the weight once; 8 FLOPs per element.
        var fused = kernels["gated_residual_rmsnorm"];
        Assert.Equal((5 * rows * cols + cols) * 2, fused.GetProperty("bytes").GetInt64());
        Assert.Equal(8 * rows * cols, fused.GetProperty("flops").GetInt64());
        // q and k norm + RoPE in one launch: both read and written, two norm weights; 7 FLOPs per element.
        var qk = kernels["qk_norm_rope"];
        long qkValues = Dim(qk, "tokens") * (Dim(qk, "heads") + Dim(qk, "kv_heads")) * Dim(qk, "head_dim");
        Assert.Equal((2 * qkValues + 2 * Dim(qk, "head_dim")) * 2, qk.GetProperty("bytes").GetInt64());
        Assert.Equal(7 * qkValues, qk.GetProperty("flops").GetInt64());
        // A projection: x [m,k] and w [n,k] read, y [m,n] written in bf16; 2mnk FLOPs.
        var q = kernels["gemm_q_proj"];
        long m = Dim(q, "m"), n = Dim(q, "n"), k = Dim(q, "k");
        Assert.Equal((m * k + n * k + m * n) * 2, q.GetProperty("bytes").GetInt64());
        Assert.Equal(2 * m * n * k, q.GetProperty("flops").GetInt64());
        // Causal prefill: 4·D FLOPs for each of the T(T+1)/2 query-key pairs of each head.
        var prefill = kernels["attention_prefill"];
        long t = Dim(prefill, "tokens");
        Assert.Equal(4 * Dim(prefill, "head_dim") * Dim(prefill, "heads") * t * (t + 1) / 2, prefill.GetProperty("flops").GetInt64());
        // Top-K log-probabilities: K + 2 reads of each bf16 row, K (int32, fp32) pairs written per row.
        var topK = kernels["topk_logprobs"];
        long kRows = Dim(topK, "rows"), kVocab = Dim(topK, "vocab"), kk = Dim(topK, "k");
        Assert.Equal((kk + 2) * kRows * kVocab * 2 + 8 * kRows * kk, topK.GetProperty("bytes").GetInt64());
        // The training projection as fp32 and with TF32 operands: the same shape, bytes (4 per element) and FLOPs.
        var f32Gemm = kernels["gemm_gate_up_proj_f32"];
        var tf32Gemm = kernels["gemm_gate_up_proj_tf32"];
        Assert.Equal(("f32", "tf32"), (f32Gemm.GetProperty("dtype").GetString(), tf32Gemm.GetProperty("dtype").GetString()));
        long gm = Dim(f32Gemm, "m"), gn = Dim(f32Gemm, "n"), gk = Dim(f32Gemm, "k");
        Assert.Equal((gm * gk + gn * gk + gm * gn) * 4, tf32Gemm.GetProperty("bytes").GetInt64());
        Assert.Equal(2 * gm * gn * gk, tf32Gemm.GetProperty("flops").GetInt64());
        // Training kernels are fp32: SwiGLU backward reads gate, up and dy and writes dgate and dup.
        var swigluBackward = kernels["swiglu_backward"];
        Assert.Equal("f32", swigluBackward.GetProperty("dtype").GetString());
        Assert.Equal(5 * Dim(swigluBackward, "count") * 4, swigluBackward.GetProperty("bytes").GetInt64());
        // The attention backward's 14·D FLOPs per causal pair and head, and 2·D per row and head for delta.
        var attentionBackward = kernels["attention_backward"];
        long bt = Dim(attentionBackward, "tokens"), bh = Dim(attentionBackward, "heads"), bd = Dim(attentionBackward, "head_dim");
        Assert.Equal(14 * bd * bh * (bt * (bt + 1) / 2) + 2 * bt * bh * bd, attentionBackward.GetProperty("flops").GetInt64());
        // The distillation student pass as a GPU trainer runs it: fp32 student read twice and written, bf16 teacher read twice.
        var mixed = kernels["kd_dense_f32_bf16"];
        long kdRows = Dim(mixed, "rows"), kdVocab = Dim(mixed, "vocab");
        Assert.Equal("f32/bf16", mixed.GetProperty("dtype").GetString());
        Assert.Equal(kdRows * kdVocab * (3 * 4 + 2 * 2) + 28 * kdRows, mixed.GetProperty("bytes").GetInt64());
        Assert.Equal(kernels["kd_dense"].GetProperty("flops").GetInt64(), mixed.GetProperty("flops").GetInt64());
        // The trainer's embedding lookup of a bf16 table: 2 bytes read and 4 written per element, and the int32 ids.
        var widened = kernels["embedding_bf16_f32"];
        long et = Dim(widened, "tokens"), ed = Dim(widened, "dim");
        Assert.Equal(6 * et * ed + 4 * et, widened.GetProperty("bytes").GetInt64());
        Assert.Equal("bf16/f32", widened.GetProperty("dtype").GetString());
        var gumbel = kernels["gumbel_topk_fwd_bwd"];
        Assert.Equal((64L, 48L), (Dim(gumbel, "layers"), Dim(gumbel, "keep")));
    }

    [Fact]
    public void CpuRunUsesTheSameSchema()
    {
        var r = CliProcess.Run("bench", "kernels", "--device", "cpu", "--json", "--repeats", "1", "--threads", "1");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var json = JsonDocument.Parse(r.Stdout);
        Assert.Equal("cpu", json.RootElement.GetProperty("device").GetString());
        Assert.Equal(E3.Pruning.Bench.CpuKernelBenchmark.WarmupMilliseconds, json.RootElement.GetProperty("warmup_ms").GetDouble());
        var kernels = CheckSchema(json.RootElement);
        foreach (var name in new[] { "rmsnorm", "swiglu", "attention_prefill", "attention_decode", "gemm_lm_head", "kd_loss_dense", "gumbel_topk_fwd_bwd" })
            Assert.Contains(name, kernels.Keys);
        var swiglu = kernels["swiglu"];
        // fp32 on the CPU: gate and up read, y written, 4 bytes each.
        Assert.Equal(3 * Dim(swiglu, "count") * 4, swiglu.GetProperty("bytes").GetInt64());
    }

    [Fact]
    public void E3CompilesItsCodeOptimisedOnFirstCall()
    {
        // The benchmarks' short warm-ups rely on it: with tier-0 code, the CPU SwiGLU timed 50x slow (BenchWarmup).
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "e3.runtimeconfig.json")));
        var properties = config.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");
        Assert.False(properties.GetProperty("System.Runtime.TieredCompilation.QuickJit").GetBoolean());
    }

    [Fact]
    public void UnknownShapeOrDeviceIsOneClearError()
    {
        var shape = CliProcess.Run("bench", "kernels", "--device", "cpu", "--shape", "qwen3-9b");
        Assert.Equal(2, shape.ExitCode); // usage errors
        Assert.Contains("--shape: 'qwen3-9b' is not one of qwen3-8b, qwen3-32b, small", shape.Stderr);
        var device = CliProcess.Run("bench", "kernels", "--device", "tpu");
        Assert.Equal(2, device.ExitCode);
        Assert.Contains("--device: 'tpu'", device.Stderr);
    }

    // Every entry's derived figures follow from its bytes, FLOPs and time exactly as the schema says.
    static Dictionary<string, JsonElement> CheckSchema(JsonElement root)
    {
        var copy = root.GetProperty("copy");
        var gemm = root.GetProperty("gemm");
        double copyRate = copy.GetProperty("gbps").GetDouble(), gemmRate = gemm.GetProperty("tflops").GetDouble();
        Assert.True(copyRate > 0 && gemmRate > 0);
        Assert.Equal(2 * Dim(copy, "bytes"), copy.GetProperty("bytes").GetInt64()); // read + write
        long g = Dim(gemm, "m");
        Assert.Equal(2 * g * g * g, gemm.GetProperty("flops").GetInt64());
        var kernels = new Dictionary<string, JsonElement>();
        foreach (var e in root.GetProperty("kernels").EnumerateArray())
        {
            string name = e.GetProperty("name").GetString()!;
            double ms = e.GetProperty("median_ms").GetDouble();
            Assert.True(ms > 0, name);
            double gbps = e.GetProperty("bytes").GetInt64() / (ms * 1e6), tflops = e.GetProperty("flops").GetInt64() / (ms * 1e9);
            Assert.Equal(gbps, e.GetProperty("gbps").GetDouble(), 1e-9 * gbps);
            Assert.Equal(tflops, e.GetProperty("tflops").GetDouble(), 1e-9 * tflops + 1e-300);
            Assert.Equal(gbps / copyRate, e.GetProperty("copy_fraction").GetDouble(), 1e-9 * gbps / copyRate);
            Assert.Equal(tflops / gemmRate, e.GetProperty("gemm_fraction").GetDouble(), 1e-9 * tflops / gemmRate + 1e-300);
            Assert.True(e.GetProperty("bytes").GetInt64() > 0, name);
            // The bound follows from the work at the two measured roofs.
            double memoryMs = e.GetProperty("bytes").GetInt64() / (copyRate * 1e6), computeMs = e.GetProperty("flops").GetInt64() / (gemmRate * 1e9);
            string bound = Math.Max(memoryMs, computeMs) < E3.Interop.Kernels.Bench.KernelBenchReport.LatencyFloorMilliseconds ? "latency"
                : memoryMs >= computeMs ? "memory" : "compute";
            Assert.Equal(bound, e.GetProperty("bound").GetString());
            kernels.Add(name, e);
        }
        return kernels;
    }

    static long Dim(JsonElement entry, string name) => entry.GetProperty("shape").GetProperty(name).GetInt64();
}
