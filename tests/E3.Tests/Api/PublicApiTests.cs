using System.Reflection;
using PublicApiGenerator;
using Xunit;

namespace E3.Tests.Api;

/// <summary>
/// The public API of each library assembly, as PublicApiGenerator prints it, against the copy approved in this folder
/// (<c>E3.Model.approved.txt</c>, …). Downstream tools link these assemblies, so a change to what they expose must be
/// a decision, not an accident: when this fails, the new surface is written beside the approved one as
/// <c>.received.txt</c>; review the difference and, if it is meant, copy it over the approved file in the same commit.
/// </summary>
public sealed class PublicApiTests
{
    public static TheoryData<string> Assemblies() => new()
    {
        "E3.Interop", "E3.Backends", "E3.Model", "E3.Optim", "E3.Pruning",
    };

    [Theory]
    [MemberData(nameof(Assemblies))]
    public void ThePublicApiIsTheApprovedOne(string name)
    {
        var assembly = Assembly.Load(name);
        var options = new ApiGeneratorOptions
        {
            // Attributes that say how the assembly was built, not what it offers.
            ExcludeAttributes = ["System.Runtime.Versioning.TargetFrameworkAttribute", "System.Reflection.AssemblyMetadataAttribute",
                "System.Runtime.CompilerServices.InternalsVisibleToAttribute"],
        };
        string actual = Normalize(assembly.GeneratePublicApi(options));
        string folder = Path.Combine(E3.Tests.Tokenization.NpmFixtures.RepoRoot, "tests", "E3.Tests", "Api");
        string approvedPath = Path.Combine(folder, $"{name}.approved.txt"), receivedPath = Path.Combine(folder, $"{name}.received.txt");
        string approved = File.Exists(approvedPath) ? Normalize(File.ReadAllText(approvedPath)) : "";
        if (actual == approved)
        {
            File.Delete(receivedPath);
            return;
        }
        File.WriteAllText(receivedPath, actual);
        var was = approved.Split('\n').ToHashSet();
        var now = actual.Split('\n').ToHashSet();
        var added = now.Except(was).Take(20).Select(l => "+ " + l.Trim());
        var removed = was.Except(now).Take(20).Select(l => "- " + l.Trim());
        Assert.Fail($"{name}'s public API differs from {approvedPath}; the new one is in {receivedPath}. If the change is meant, " +
            $"copy it over the approved file. First differences:\n{string.Join('\n', removed.Concat(added))}");
    }

    static string Normalize(string text) => text.Replace("\r\n", "\n").TrimEnd() + "\n";
}
