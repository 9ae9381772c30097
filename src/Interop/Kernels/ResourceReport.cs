using System.Globalization;
using System.Text.RegularExpressions;

namespace E3.Interop.Kernels;

/// <summary>What ptxas reported for one entry function.</summary>
/// <param name="Kernel">Entry point name.</param>
/// <param name="Arch">e.g. <c>sm_90</c>.</param>
/// <param name="Registers">Registers per thread.</param>
/// <param name="SharedBytes">Static shared memory per block (dynamic shared memory is a launch parameter).</param>
/// <param name="ConstantBytes">Bank-0 constant memory (kernel parameters live there).</param>
/// <param name="StackFrameBytes">Per-thread stack frame.</param>
/// <param name="SpillStoreBytes">Bytes stored to local memory because registers ran out.</param>
/// <param name="SpillLoadBytes">Bytes loaded back from those spills.</param>
internal sealed record KernelResources(
    string Kernel, string Arch, int Registers, int SharedBytes, int ConstantBytes, int StackFrameBytes, int SpillStoreBytes, int SpillLoadBytes)
{
    /// <summary>Whether ptxas had to spill registers to local memory.</summary>
    public bool HasSpills => SpillStoreBytes > 0 || SpillLoadBytes > 0;
}

/// <summary>Parses the verbose ptxas log (<c>--ptxas-options=-v</c>) NVRTC returns as the program log.</summary>
internal static partial class ResourceReport
{
    /// <summary>
    /// One entry per <c>Compiling entry function 'X' for 'sm_Y'</c> block, in log order. Lines look like:
    /// <code>
    /// ptxas info    : Compiling entry function 'e3_rmsnorm_f32' for 'sm_90'
    /// ptxas info    : Function properties for e3_rmsnorm_f32
    ///     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
    /// ptxas info    : Used 16 registers, 128 bytes smem, 392 bytes cmem[0]
    /// </code>
    /// Fields ptxas leaves out (no shared memory, no properties line) are zero.
    /// </summary>
    public static IReadOnlyList<KernelResources> Parse(string log)
    {
        ArgumentNullException.ThrowIfNull(log);
        var results = new List<KernelResources>();
        KernelResources? current = null;
        string? propertiesFor = null;
        foreach (var rawLine in log.Split('\n'))
        {
            var line = rawLine.TrimEnd('\r');
            if (CompilingEntry().Match(line) is { Success: true } entry)
            {
                Flush();
                current = new KernelResources(entry.Groups[1].Value, entry.Groups[2].Value, 0, 0, 0, 0, 0, 0);
                propertiesFor = null;
            }
            else if (FunctionProperties().Match(line) is { Success: true } properties)
            {
                propertiesFor = properties.Groups[1].Value;
            }
            else if (current is not null && propertiesFor == current.Kernel && StackLine().Match(line) is { Success: true } stack)
            {
                current = current with
                {
                    StackFrameBytes = Int(stack.Groups[1]),
                    SpillStoreBytes = Int(stack.Groups[2]),
                    SpillLoadBytes = Int(stack.Groups[3]),
                };
                propertiesFor = null;
            }
            else if (current is not null && UsedRegisters().Match(line) is { Success: true } used)
            {
                current = current with
                {
                    Registers = Int(used.Groups[1]),
                    SharedBytes = SharedMemory().Match(line) is { Success: true } smem ? Int(smem.Groups[1]) : 0,
                    ConstantBytes = ConstantBank0().Match(line) is { Success: true } cmem ? Int(cmem.Groups[1]) : 0,
                };
            }
        }
        Flush();
        return results;

        void Flush()
        {
            if (current is not null)
                results.Add(current);
            current = null;
        }
    }

    private static int Int(Group group) => int.Parse(group.Value, NumberStyles.None, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"Compiling entry function '([^']+)' for '([^']+)'")]
    private static partial Regex CompilingEntry();

    [GeneratedRegex(@"Function properties for (\S+)")]
    private static partial Regex FunctionProperties();

    [GeneratedRegex(@"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")]
    private static partial Regex StackLine();

    [GeneratedRegex(@"Used (\d+) registers")]
    private static partial Regex UsedRegisters();

    [GeneratedRegex(@"(\d+) bytes smem")]
    private static partial Regex SharedMemory();

    [GeneratedRegex(@"(\d+) bytes cmem\[0\]")]
    private static partial Regex ConstantBank0();
}
