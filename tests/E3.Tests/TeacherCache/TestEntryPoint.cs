using System.CommandLine;
using E3.Cli.Commands;

namespace E3.Tests.TeacherCache;

/// <summary>
/// Entry point of E3.Tests.dll when run as a program (<c>dotnet E3.Tests.dll teacher-cache ...</c>): the
/// resumability test runs the real command in a child process so it can kill it mid-write. Once the lead wires
/// TeacherCacheCommand into CommandLineApp, <c>dotnet e3.dll teacher-cache</c> does the same.
/// </summary>
public static class TestEntryPoint
{
    public static int Main(string[] args) =>
        args is ["teacher-cache", ..] ? new RootCommand { TeacherCacheCommand.Create() }.Parse(args).Invoke() : 2;
}
