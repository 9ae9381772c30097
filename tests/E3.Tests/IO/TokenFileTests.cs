using E3.Model.IO;
using Xunit;

namespace E3.Tests.IO;

public class TokenFileTests
{
    /// <summary>Writes <paramref name="bytes"/> as <paramref name="name"/> and asserts reading it fails naming the file and each fragment.</summary>
    static void Rejected(string name, byte[] bytes, params string[] fragments)
    {
        using var folder = new TempFolder();
        string path = folder.File(name);
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<TokenFileException>(() => TokenFile.Read(path));
        Assert.StartsWith(path + ": ", e.Message);
        foreach (string fragment in fragments) Assert.Contains(fragment, e.Message);
    }
    [Fact]
    public void RawUInt32BinIsRead()
    {
        using var folder = new TempFolder();
        string path = folder.File("tokens.bin");
        File.WriteAllBytes(path, [0x01, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x39, 0x30, 0x02, 0x00]);
        var tokens = TokenFile.Read(path);
        Assert.Equal([1, 65535, 0, 0x00023039], tokens.Ids);
        Assert.Equal(path, tokens.Path);
        tokens.Validate(vocabSize: 0x00023039 + 1);
    }

    [Fact]
    public void EmptyBinIsNoTokens()
    {
        using var folder = new TempFolder();
        File.WriteAllBytes(folder.File("e.bin"), []);
        Assert.Empty(TokenFile.Read(folder.File("e.bin")).Ids);
    }

    [Fact]
    public void BinLengthNotMultipleOfFour()
        => Rejected("odd.bin", new byte[10], "length 10 bytes is not a multiple of 4");

    [Fact]
    public void BinIdBeyondIntRange()
        => Rejected("big.bin", RawNpy.UInt32s(5, 3000000000), "index 1 is 3000000000");

    [Fact]
    public void NpyIntegerDTypesAreRead()
    {
        using var folder = new TempFolder();
        File.WriteAllBytes(folder.File("a.npy"), RawNpy.Build("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", RawNpy.Int32s(7, 8, 9)));
        File.WriteAllBytes(folder.File("b.npy"), RawNpy.Build("{'descr': '<u4', 'fortran_order': False, 'shape': (2,), }", RawNpy.UInt32s(151935, 0)));
        File.WriteAllBytes(folder.File("c.npy"), RawNpy.Build("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }", RawNpy.Int64s(1, 2, 3, 4)));
        Assert.Equal([7, 8, 9], TokenFile.Read(folder.File("a.npy")).Ids);
        Assert.Equal([151935, 0], TokenFile.Read(folder.File("b.npy")).Ids);
        // 2-D batches flatten in C order.
        Assert.Equal([1, 2, 3, 4], TokenFile.Read(folder.File("c.npy")).Ids);
    }

    [Fact]
    public void NpyInt64BeyondIntRange()
        => Rejected("wide.npy", RawNpy.Build("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", RawNpy.Int64s(1, 2, 1L << 33)), "index 2 is 8589934592");

    [Fact]
    public void NpyFloatIsNotTokens()
        => Rejected("f.npy", RawNpy.Build("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", RawNpy.Floats(1f, 2f)), "dtype <f4 is not an integer dtype");

    [Fact]
    public void NpyThreeDimensionsAreRefused()
        => Rejected("cube.npy", RawNpy.Build("{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 2), }", RawNpy.Int32s(1, 2)), "shape (1, 1, 2) is not 1-D or 2-D");

    [Fact]
    public void UnknownExtension()
        => Rejected("tokens.txt", "1 2 3"u8.ToArray(), "extension '.txt'");

    [Theory]
    [InlineData(new[] { 0, 5, 1000, 3 }, 1000, 2, 1000)]
    [InlineData(new[] { 0, -4, 1 }, 1000, 1, -4)]
    public void ValidateNamesFileIndexAndValue(int[] ids, int vocab, int badIndex, int badValue)
    {
        using var folder = new TempFolder();
        string path = folder.File("ids.npy");
        File.WriteAllBytes(path, RawNpy.Build($"{{'descr': '<i4', 'fortran_order': False, 'shape': ({ids.Length},), }}", RawNpy.Int32s(ids)));
        var tokens = TokenFile.Read(path);
        var e = Assert.Throws<TokenFileException>(() => tokens.Validate(vocab));
        Assert.Contains(path, e.Message);
        Assert.Contains($"index {badIndex} is {badValue}", e.Message);
        Assert.Contains($"[0, {vocab})", e.Message);
        // One more vocabulary entry than the largest id makes a file without negatives valid.
        if (ids.All(i => i >= 0)) tokens.Validate(ids.Max() + 1);
    }
}
