using System.Runtime.InteropServices;

namespace E3.Tests.Support;

/// <summary>Sends a POSIX signal to a child process, as a terminal's Ctrl+C or a job scheduler's stop would.</summary>
internal static partial class Signals
{
    /// <summary>SIGTERM.</summary>
    public const int Terminate = 15;

    /// <summary>kill(2): 0 on success.</summary>
    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);
}
