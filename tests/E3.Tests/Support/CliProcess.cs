using System.Diagnostics;

namespace E3.Tests.Support;

/// <summary>Runs the real <c>e3</c> executable (e3.dll next to the tests) in a child process.</summary>
public static class CliProcess
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static Result Run(params string[] args) => RunWithEnvironment(new Dictionary<string, string?>(), args);

    /// <summary>Runs e3 in <paramref name="workingDirectory"/>.</summary>
    public static Result RunIn(string workingDirectory, params string[] args) => RunWithEnvironment(new Dictionary<string, string?>(), args, workingDirectory);

    /// <summary>Runs e3 with <paramref name="environment"/> applied to the child only (a null value removes the variable).</summary>
    public static Result RunWithEnvironment(IReadOnlyDictionary<string, string?> environment, params string[] args) => RunWithEnvironment(environment, args, null);

    static Result RunWithEnvironment(IReadOnlyDictionary<string, string?> environment, string[] args, string? workingDirectory)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "e3.dll");
        if (!File.Exists(dll)) throw new FileNotFoundException("e3.dll is not next to the test assembly", dll);
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (workingDirectory != null) psi.WorkingDirectory = workingDirectory;
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (name, value) in environment)
        {
            if (value is null) psi.Environment.Remove(name);
            else psi.Environment[name] = value;
        }
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            p.Kill(true);
            throw new TimeoutException($"e3 {string.Join(' ', args)} did not finish in 5 minutes");
        }
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }
}
