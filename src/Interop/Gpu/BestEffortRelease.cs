using E3.Interop.Cublas;
using E3.Interop.Driver;
using E3.Interop.Emulator;

namespace E3.Interop.Gpu;

/// <summary>
/// Runs the steps of a Dispose so that a device failure in one neither stops the others nor escapes. After a fatal CUDA
/// error (an illegal address, say) the context is unusable and every later driver call fails with the same error; an
/// exception from Dispose would then replace the one that reported the fault, and leave everything after it unreleased.
/// </summary>
internal static class BestEffortRelease
{
    /// <summary>Runs every step; device failures (CUDA, cuBLAS, emulator) are dropped, anything else is rethrown after the rest ran.</summary>
    public static void Run(params Action[] steps)
    {
        ArgumentNullException.ThrowIfNull(steps);
        Exception? other = null;
        foreach (var step in steps)
        {
            try
            {
                step();
            }
            catch (Exception e) when (e is CudaException or CublasException or EmuException)
            {
                // Already reported, or about to be, by the operation that hit the fault.
            }
            catch (Exception e)
            {
                other ??= e;
            }
        }
        if (other != null) throw other;
    }
}
