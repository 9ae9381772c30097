using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace E3.Tests;

public class TorchSharpLoadTests
{
    // TorchSharp must load on Debian 12 (libstdc++ without GLIBCXX_3.4.32): the build weakens that
    // version requirement in our output copy. If it fails to load, this test fails; it never skips.
    [Fact]
    public void AdamWStepsATensor()
    {
        // Parameter takes ownership of the tensor's handle, so keep only the parameter.
        var p = new TorchSharp.Modules.Parameter(torch.tensor(new float[] { 1f, -2f, 3f }));
        var opt = torch.optim.AdamW(new[] { p }, lr: 0.1, weight_decay: 0.0);
        var loss = (p * p).sum();
        loss.backward();
        opt.step();
        var after = p.data<float>().ToArray();
        // The first AdamW step moves each weight by lr * sign(grad) (bias-corrected m/sqrt(v) = ±1).
        Assert.Equal(0.9f, after[0], 4);
        Assert.Equal(-1.9f, after[1], 4);
        Assert.Equal(2.9f, after[2], 4);
    }
}
