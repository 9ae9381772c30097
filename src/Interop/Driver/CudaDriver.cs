using System.Text;
using E3.Interop.Gpu;
using E3.Interop.Native;

namespace E3.Interop.Driver;

/// <summary>Process-wide driver queries: initialisation, version, devices.</summary>
internal static unsafe class CudaDriver
{
    private static readonly Lazy<bool> Initialized = new(() =>
    {
        NativeLibraryResolver.Load(CudaLibrary.Driver);
        CudaException.Check(DriverApi.cuInit(0), "cuInit");
        return true;
    });

    /// <summary>Loads libcuda and calls <c>cuInit</c> once.</summary>
    /// <exception cref="CudaLibraryNotFoundException">No driver installed.</exception>
    /// <exception cref="CudaException">cuInit failed (e.g. CUDA_ERROR_NO_DEVICE).</exception>
    public static void Initialize() => _ = Initialized.Value;

    /// <summary>The driver's CUDA version, e.g. 12.4.</summary>
    public static Version DriverVersion
    {
        get
        {
            Initialize();
            int version;
            CudaException.Check(DriverApi.cuDriverGetVersion(&version), "cuDriverGetVersion");
            return new Version(version / 1000, version % 1000 / 10);
        }
    }

    /// <summary>Number of CUDA devices.</summary>
    public static int DeviceCount
    {
        get
        {
            Initialize();
            int count;
            CudaException.Check(DriverApi.cuDeviceGetCount(&count), "cuDeviceGetCount");
            return count;
        }
    }

    /// <summary>Name, compute capability, SMs and memory of device <paramref name="ordinal"/>.</summary>
    public static GpuDeviceInfo GetDeviceInfo(int ordinal)
    {
        int device = GetDevice(ordinal);
        byte* name = stackalloc byte[256];
        CudaException.Check(DriverApi.cuDeviceGetName(name, 256, device), "cuDeviceGetName");
        nuint memory;
        CudaException.Check(DriverApi.cuDeviceTotalMem(&memory, device), "cuDeviceTotalMem");
        return new GpuDeviceInfo(
            ordinal,
            Encoding.UTF8.GetString(new ReadOnlySpan<byte>(name, 256)).TrimEnd('\0'),
            Attribute(device, DriverConstants.AttributeComputeCapabilityMajor) * 10 + Attribute(device, DriverConstants.AttributeComputeCapabilityMinor),
            Attribute(device, DriverConstants.AttributeMultiprocessorCount),
            (long)memory,
            Attribute(device, DriverConstants.AttributeL2CacheSize),
            Attribute(device, DriverConstants.AttributeMaxSharedMemoryPerBlockOptIn));
    }

    internal static int GetDevice(int ordinal)
    {
        Initialize();
        int device;
        CudaException.Check(DriverApi.cuDeviceGet(&device, ordinal), $"cuDeviceGet({ordinal})");
        return device;
    }

    private static int Attribute(int device, int attribute)
    {
        int value;
        CudaException.Check(DriverApi.cuDeviceGetAttribute(&value, attribute, device), $"cuDeviceGetAttribute({attribute})");
        return value;
    }
}
