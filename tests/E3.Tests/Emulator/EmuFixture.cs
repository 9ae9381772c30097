using E3.Interop.Emulator;
using Xunit;

namespace E3.Tests.Emulator;

/// <summary>One emulator device per test run, on the test library (product kernels + semantics test kernels).</summary>
public sealed class EmuFixture : IDisposable
{
    internal EmuDevice Device { get; } = EmuDevice.Open(EmuLibrary.TestFileName);

    public void Dispose() => Device.Dispose();
}

[CollectionDefinition(Name)]
public sealed class EmuCollection : ICollectionFixture<EmuFixture>
{
    public const string Name = "CUDA emulator";
}
