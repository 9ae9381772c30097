using Xunit;
using E3.Interop.Nvrtc;

namespace E3.Tests.Cuda;

/// <summary>
/// NVRTC is a build prerequisite (build.sh installs Debian's libnvrtc11.2), so a missing NVRTC fails these
/// tests everywhere — in CI and locally — rather than silently skipping the kernel checks.
/// </summary>
internal static class NvrtcRequirement
{
    public static void Ensure()
    {
        if (!NvrtcCompiler.IsAvailable(out var error))
            Assert.Fail($"NVRTC is required for the kernel tests (CI={Environment.GetEnvironmentVariable("CI") ?? "unset"}); run ./build.sh restore. {error}");
    }
}
