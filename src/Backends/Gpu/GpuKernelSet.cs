using E3.Interop.Gpu;
using E3.Interop.Kernels;

namespace E3.Backends.Gpu;

/// <summary>Every kernel family <see cref="GpuBackend"/> launches, loaded once per backend.</summary>
internal sealed class GpuKernelSet : IDisposable
{
    public GpuKernelSet(IGpuDevice device)
    {
        var loaded = new List<KernelFamily>();
        try
        {
            T Load<T>(Func<IGpuDevice, T> create) where T : KernelFamily
            {
                var family = create(device);
                loaded.Add(family);
                return family;
            }
            RmsNorm = Load(d => new RmsNormKernels(d));
            Rope = Load(d => new RopeKernels(d));
            SwiGlu = Load(d => new SwiGluKernels(d));
            Embedding = Load(d => new EmbeddingKernels(d));
            Residual = Load(d => new ResidualKernels(d));
            Rows = Load(d => new RowKernels(d));
            Sampling = Load(d => new SamplingKernels(d));
            Convert = Load(d => new ConvertKernels(d));
        }
        catch
        {
            // A missing module (an emulator library older than the kernels) must not leak the ones already loaded.
            foreach (var family in loaded) family.Dispose();
            throw;
        }
        _all = loaded;
    }

    readonly List<KernelFamily> _all;

    public RmsNormKernels RmsNorm { get; }
    public RopeKernels Rope { get; }
    public SwiGluKernels SwiGlu { get; }
    public EmbeddingKernels Embedding { get; }
    public ResidualKernels Residual { get; }
    public RowKernels Rows { get; }
    public SamplingKernels Sampling { get; }
    public ConvertKernels Convert { get; }

    public void Dispose()
    {
        foreach (var family in _all) family.Dispose();
    }
}
