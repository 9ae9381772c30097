using E3.Interop.Native;
using Xunit;

namespace E3.Tests.Cuda;

public sealed class LibraryDiscoveryTests
{
    [Fact]
    public void CandidatesFollowTheDocumentedOrder()
    {
        using var temp = new TempFolder();
        var root = temp.Make("root");
        var overrideDir = temp.Make("override");
        var home = temp.Make("home");
        var venv = temp.Make("venv");
        temp.Make("root/usr/local/cuda-11.8/lib64");
        temp.Make("root/usr/local/cuda-12.4/lib64");
        var venvLib = temp.Make("venv/lib/python3.12/site-packages/nvidia/cublas/lib");
        var userLib = temp.Make("home/.local/lib/python3.11/site-packages/nvidia/cublas/lib");
        temp.Make("home/.local/lib/python3.11/site-packages/nvidia/cuda_runtime"); // no lib folder: not a candidate
        var localLib = temp.Make("root/usr/local/lib/python3.11/dist-packages/nvidia/cublas/lib");
        var systemLib = temp.Make("root/usr/lib/python3/dist-packages/nvidia/cublas/lib");
        var environment = new LibrarySearchEnvironment(overrideDir, home, venv, CondaPrefix: null, FileSystemRoot: root);

        var candidates = NativeLibraryResolver.CandidatePaths(CudaLibrary.Cublas, environment);

        string[] sonames = ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11"];
        string[] folders =
        [
            overrideDir,
            "", // the dynamic loader's own search, by bare soname
            Path.Combine(root, "usr/local/cuda/lib64"),
            Path.Combine(root, "usr/local/cuda-12.4/lib64"), // newest toolkit first
            Path.Combine(root, "usr/local/cuda-11.8/lib64"),
            Path.Combine(root, "usr/lib/x86_64-linux-gnu"),
            venvLib, // the active environment before user and system site-packages
            userLib,
            localLib,
            systemLib,
        ];
        var expected = folders.SelectMany(f => sonames.Select(s => f.Length == 0 ? s : Path.Combine(f, s))).ToArray();
        Assert.Equal(expected, candidates);
    }

    [Fact]
    public void NothingLoadableListsEveryPathTriedInOrder()
    {
        using var temp = new TempFolder();
        var emptyOverride = temp.Make("override");
        // Confined to empty folders (no loader search), so nothing can load even on a machine with a GPU driver.
        var environment = new LibrarySearchEnvironment(emptyOverride, null, null, null, FileSystemRoot: temp.Make("root"), SearchLoaderPath: false);

        var error = Assert.Throws<CudaLibraryNotFoundException>(() => NativeLibraryResolver.Load(CudaLibrary.Driver, environment));

        var candidates = NativeLibraryResolver.CandidatePaths(CudaLibrary.Driver, environment);
        Assert.Equal(candidates.Count, error.Attempts.Count);
        for (int i = 0; i < candidates.Count; i++)
        {
            Assert.StartsWith(candidates[i] + " (", error.Attempts[i]);
            Assert.Contains(candidates[i], error.Message);
        }
        Assert.StartsWith(Path.Combine(emptyOverride, "libcuda.so.1") + " (not found)", error.Attempts[0]);
        Assert.DoesNotContain(candidates, c => !Path.IsPathRooted(c)); // no bare soname was handed to the loader
        Assert.Contains("E3_CUDA_LIB_DIR", error.Message);
        Assert.DoesNotContain('\n', error.Message); // one line, as every e3 error is
    }

    [Fact]
    public void OverrideFolderIsTriedFirstAndABrokenFileFallsThrough()
    {
        using var temp = new TempFolder();
        var overrideDir = temp.Make("override");
        var brokenPath = Path.Combine(overrideDir, "libcublas.so.13");
        // Not a shared object at all: dlopen must reject it, the reason must be reported, and the search move on.
        File.WriteAllText(brokenPath, "not an ELF file");
        var environment = new LibrarySearchEnvironment(overrideDir, null, null, null, FileSystemRoot: temp.Make("root"), SearchLoaderPath: false);
        var error = Assert.Throws<CudaLibraryNotFoundException>(() => NativeLibraryResolver.Load(CudaLibrary.Cublas, environment));
        Assert.StartsWith(brokenPath + " (", error.Attempts[0]);
        Assert.DoesNotContain("(not found)", error.Attempts[0]);
        Assert.Contains(brokenPath, error.Attempts[0][(brokenPath.Length + 2)..]); // the loader's own reason, which names the file
        Assert.DoesNotContain("LD_DEBUG", error.Message); // not .NET's generic advice
        Assert.DoesNotContain('\n', error.Message);
        Assert.EndsWith("(not found)", error.Attempts[1]);

        // A real shared object under the next soname. Loading this copy (recognisable by zlib's export) even with
        // the loader search on proves the override folder is tried before any installed cuBLAS.
        File.Copy("/lib/x86_64-linux-gnu/libz.so.1", Path.Combine(overrideDir, "libcublas.so.12"));
        var handle = NativeLibraryResolver.Load(CudaLibrary.Cublas, environment with { SearchLoaderPath = true });

        Assert.True(System.Runtime.InteropServices.NativeLibrary.TryGetExport(handle, "zlibVersion", out _));
    }

    [Fact]
    public void InstalledNvrtcIsFoundThroughTheLoader()
    {
        NvrtcRequirement.Ensure();
        // build.sh installs Debian's libnvrtc.so.11.2, reachable by bare soname through ld.so.cache.
        var handle = NativeLibraryResolver.Load(CudaLibrary.Nvrtc, new LibrarySearchEnvironment(null, null, null, null, "/nonexistent-root"));
        Assert.True(System.Runtime.InteropServices.NativeLibrary.TryGetExport(handle, "nvrtcCompileProgram", out _));
    }
}
