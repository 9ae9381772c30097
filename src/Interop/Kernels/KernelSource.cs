using System.Text.RegularExpressions;

namespace E3.Interop.Kernels;

/// <summary>One <c>kernels/*.cu</c> file.</summary>
/// <param name="Name">The file name without extension, e.g. <c>rmsnorm</c>; also the module name.</param>
/// <param name="FileName">e.g. <c>rmsnorm.cu</c>, the name NVRTC reports in diagnostics.</param>
/// <param name="Text">The source.</param>
internal sealed partial record KernelSource(string Name, string FileName, string Text)
{
    /// <summary>Whether the file opts into <c>--use_fast_math</c> with a <c>// e3: fast-math</c> line.</summary>
    public bool FastMath => FastMathLine().IsMatch(Text);

    /// <summary>The <c>extern "C" __global__</c> entry points, in file order.</summary>
    public IReadOnlyList<string> EntryPoints => EntryPoint().Matches(Text).Select(m => m.Groups[1].Value).ToArray();

    [GeneratedRegex(@"^\s*//\s*e3:\s*fast-math\s*$", RegexOptions.Multiline)]
    private static partial Regex FastMathLine();

    [GeneratedRegex(@"^extern\s+""C""\s+__global__\s+void\s+(e3_\w+)\s*\(", RegexOptions.Multiline)]
    private static partial Regex EntryPoint();
}
