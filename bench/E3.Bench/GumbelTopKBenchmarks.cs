using E3.Backends.Numerics;
using BenchmarkDotNet.Attributes;
using E3.Pruning.Masking;
using TorchSharp;
using static TorchSharp.torch;

namespace E3.Bench;

/// <summary>
/// Gumbel-TopK forward+backward at the shape (S = 4096, L = 64, k = 48, soft-top-k): the fused CPU
/// sampler against a TorchSharp composite of the same formula with autograd, on the same thread count. The
/// composite is handed precomputed noise (its timing excludes noise generation; the fused one includes it).
/// Run: dotnet run -c Release --project bench/E3.Bench -- --filter '*GumbelTopK*'
/// </summary>
[MemoryDiagnoser]
public class GumbelTopKBenchmarks
{
    private const int Samples = 4096, Layers = 64, Keep = 48;
    private const float Temperature = 1f;

    private GumbelTopKSpec spec;
    private GumbelTopKBenchInputs inputs = null!;
    private CpuGumbelTopK sampler = null!;
    private float[] hard = null!, soft = null!, grad = null!;
    private Tensor alpha = null!, noise = null!, gradMask = null!;

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        spec = new GumbelTopKSpec(Layers, Keep, Samples, Temperature, 1, 0);
        inputs = new GumbelTopKBenchInputs(spec);
        sampler = new CpuGumbelTopK(Threads);
        hard = new float[spec.MaskElements];
        soft = new float[spec.MaskElements];
        grad = new float[Layers];
        torch.set_num_threads(Threads);
        var g = new float[spec.MaskElements];
        var row = new double[Layers];
        for (var s = 0; s < Samples; s++)
        {
            GumbelNoise.Fill(spec.Seed, spec.Step, s, row);
            for (var i = 0; i < Layers; i++) g[s * Layers + i] = (float)row[i];
        }
        alpha = tensor(inputs.Logits, [Layers], ScalarType.Float32);
        noise = tensor(g, [Samples, Layers], ScalarType.Float32);
        gradMask = tensor(inputs.GradMask, [Samples, Layers], ScalarType.Float32);
    }

    [Benchmark(Baseline = true)]
    public float TorchSharpComposite()
    {
        using var scope = NewDisposeScope();
        var a = alpha.detach().requires_grad_();
        var shifted = a.unsqueeze(0) + noise;
        var y = zeros_like(shifted);
        for (var t = 0; t < Keep; t++)
        {
            var z = shifted / Temperature;
            var p = nn.functional.softmax(z, 1);
            y = y + p;
            var e = exp(z - z.max(1, keepdim: true).values);
            var leading = nn.functional.one_hot(z.argmax(1), Layers).to(ScalarType.Bool);
            var rest = e.masked_fill(leading, 0).sum(1, keepdim: true);
            var q = where(leading, rest / (rest + 1), 1 - p);
            shifted = shifted + log(clamp(q, min: 1e-20));
        }
        (y * gradMask).sum().backward();
        return a.grad!.data<float>()[0];
    }

    [Benchmark]
    public float CpuFused()
    {
        sampler.ForwardBackward(inputs.Logits, spec, inputs.GradMask, hard, soft, grad);
        return grad[0];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        alpha.Dispose();
        noise.Dispose();
        gradMask.Dispose();
    }
}
