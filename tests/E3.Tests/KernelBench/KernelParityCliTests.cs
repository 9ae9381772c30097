using System.Text.Json;
using E3.Pruning.Bench;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.KernelBench;

/// <summary><c>e3 kernels parity</c>, the check a GPU machine runs in place of the test suite, on the emulator.</summary>
public sealed class KernelParityCliTests
{
    static readonly string[] Operations =
    [
        "embedding", "embedding_bf16_table", "rmsnorm", "add_rmsnorm", "gated_residual", "gated_residual_rmsnorm", "matmul_f32_weight", "matmul_bf16_weight", "head_norm_rope", "qk_norm_rope",
        "attention_prefill_decode", "swiglu", "gather_rows", "matmul_grads", "rmsnorm_backward", "head_norm_rope_backward", "attention_train",
        "swiglu_backward", "gated_residual_backward", "embedding_backward", "kd_lm_head", "topk_indices", "topk_logprobs", "sampled_tokens", "gumbel_topk_softtopk",
        "gumbel_topk_sigmoid", "kd_lm_head_bf16_teacher", "attention_prefill_d128", "attention_prefill_d128_chunked", "model_forward", "model_forward",
    ];

    [Fact]
    public void EveryOperationOnTheEmulatorIsWithinItsBound()
    {
        var r = CliProcess.RunWithEnvironment(new Dictionary<string, string?> { ["E3_EMU_LIB"] = null }, "kernels", "parity", "--device", "emu", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var root = JsonDocument.Parse(r.Stdout).RootElement;
        Assert.True(root.GetProperty("passed").GetBoolean());
        var checks = root.GetProperty("checks").EnumerateArray().ToArray();
        Assert.Equal(Operations, checks.Select(c => c.GetProperty("name").GetString()));
        foreach (var c in checks)
        {
            double error = c.GetProperty("error").GetDouble(), bound = c.GetProperty("bound").GetDouble();
            Assert.True(error <= bound && c.GetProperty("passed").GetBoolean(), $"{c.GetProperty("name")}: {error} > {bound}");
        }
        // The bf16 checks really ran in bf16: their outputs differ from the fp32 CPU ones, within the bf16 bounds.
        var bf16 = checks.Single(c => c.GetProperty("dtype").GetString() == "bf16" && c.GetProperty("name").GetString() == "model_forward");
        Assert.InRange(bf16.GetProperty("error").GetDouble(), 1e-3, BackendParity.Bf16ModelBound);
        var attention = checks.Single(c => c.GetProperty("name").GetString() == "attention_prefill_d128");
        Assert.InRange(attention.GetProperty("error").GetDouble(), 1e-4, BackendParity.Bf16AttentionBound);
    }

    [Fact]
    public void TheErrorMeasureSeesEveryKindOfDifference()
    {
        Assert.Equal(0, BackendParity.Error([1f, -2f], [1f, -2f]));
        Assert.Equal(0.25, BackendParity.Error([1f, -1.5f], [1f, -2f]), 12); // relative to the largest reference value
        Assert.True(double.IsNaN(BackendParity.Error([1f, float.NaN], [1f, 2f])));
        Assert.True(double.IsNaN(BackendParity.Error([1f], [1f, 2f])));
        Assert.False(new ParityCheck("x", "f32", double.NaN, 1).Passed); // a NaN never passes
    }

    [Fact]
    public void AnOperationThatThrowsIsAFailedCheckWithItsMessage()
    {
        var ok = BackendParity.Guarded("fine", "f32", 1e-4, () => 1e-7);
        Assert.True(ok.Passed);
        Assert.Null(ok.Failure);
        var broken = BackendParity.Guarded("broken", "f32", 1e-4, () => throw new InvalidOperationException("CUDA_ERROR_INVALID_VALUE"));
        Assert.False(broken.Passed);
        Assert.True(double.IsNaN(broken.Error));
        Assert.Equal("InvalidOperationException: CUDA_ERROR_INVALID_VALUE", broken.Failure);
    }

    [Fact]
    public void ACpuDeviceIsRefused()
    {
        var r = CliProcess.Run("kernels", "parity", "--device", "cpu");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--device: 'cpu' is not one of cuda, emu", r.Stderr);
    }
}
