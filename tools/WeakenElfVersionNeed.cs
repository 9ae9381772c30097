// MSBuild inline task: mark one needed symbol version weak (VER_FLG_WEAK) in ELF64 little-endian files.
// Used only for TorchSharp's libLibTorchSharp.so; see TorchSharpGlibcxx.targets for why.
using System;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public class WeakenElfVersionNeed : Task
{
    [Required] public ITaskItem[] Files { get; set; }
    [Required] public string Version { get; set; }
    [Required] public string SystemLibrary { get; set; }

    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlgWeak = 0x2;

    public override bool Execute()
    {
        if (!File.Exists(SystemLibrary))
        {
            Log.LogMessage(MessageImportance.High, "E3: " + SystemLibrary + " not found; leaving TorchSharp untouched.");
            return true;
        }
        if (Contains(File.ReadAllBytes(SystemLibrary), Encoding.ASCII.GetBytes(Version + "\0")))
        {
            Log.LogMessage(MessageImportance.Low, "E3: system libstdc++ provides " + Version + "; no patch needed.");
            return true;
        }
        foreach (var item in Files)
        {
            string path = item.ItemSpec;
            byte[] elf = File.ReadAllBytes(path);
            string error;
            int changed = Weaken(elf, Version, out error);
            if (error != null) { Log.LogError("E3: cannot patch " + path + ": " + error); return false; }
            if (changed == 0) { Log.LogMessage(MessageImportance.Low, "E3: " + path + " already weak or does not need " + Version); continue; }
            string tmp = path + ".e3tmp";
            File.WriteAllBytes(tmp, elf);
            File.Replace(tmp, path, null); // rename over the original: never a half-written library
            Log.LogMessage(MessageImportance.High, "E3: marked " + Version + " weak in " + path);
        }
        return true;
    }

    static bool Contains(byte[] hay, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= hay.Length; i++)
        {
            int j = 0;
            while (j < needle.Length && hay[i + j] == needle[j]) j++;
            if (j == needle.Length) return true;
        }
        return false;
    }

    // Returns the number of vernaux entries changed; error is set when the file is not what we expect.
    static int Weaken(byte[] f, string version, out string error)
    {
        error = null;
        if (f.Length < 64 || f[0] != 0x7f || f[1] != (byte)'E' || f[2] != (byte)'L' || f[3] != (byte)'F') { error = "not an ELF file"; return 0; }
        if (f[4] != 2 || f[5] != 1) { error = "not ELF64 little-endian"; return 0; }
        ulong shoff = BitConverter.ToUInt64(f, 0x28);
        int shentsize = BitConverter.ToUInt16(f, 0x3A);
        int shnum = BitConverter.ToUInt16(f, 0x3C);
        if (shentsize < 64 || shoff + (ulong)(shentsize * shnum) > (ulong)f.Length) { error = "section header table outside the file"; return 0; }
        int changed = 0;
        for (int s = 0; s < shnum; s++)
        {
            int sh = checked((int)shoff + s * shentsize);
            if (BitConverter.ToUInt32(f, sh + 4) != ShtGnuVerneed) continue;
            long off = (long)BitConverter.ToUInt64(f, sh + 0x18);
            long size = (long)BitConverter.ToUInt64(f, sh + 0x20);
            int link = (int)BitConverter.ToUInt32(f, sh + 0x28);
            int count = (int)BitConverter.ToUInt32(f, sh + 0x2C);
            if (link >= shnum || off + size > f.Length) { error = ".gnu.version_r out of range"; return 0; }
            int strSh = checked((int)shoff + link * shentsize);
            long strOff = (long)BitConverter.ToUInt64(f, strSh + 0x18);
            long strSize = (long)BitConverter.ToUInt64(f, strSh + 0x20);
            long vn = off;
            for (int i = 0; i < count; i++)
            {
                int cnt = BitConverter.ToUInt16(f, (int)vn + 2);
                long aux = vn + BitConverter.ToUInt32(f, (int)vn + 8);
                for (int j = 0; j < cnt; j++)
                {
                    uint name = BitConverter.ToUInt32(f, (int)aux + 8);
                    if (name < strSize && ReadCString(f, strOff + name) == version)
                    {
                        ushort flags = BitConverter.ToUInt16(f, (int)aux + 4);
                        if ((flags & VerFlgWeak) == 0)
                        {
                            flags |= VerFlgWeak;
                            f[aux + 4] = (byte)flags; f[aux + 5] = (byte)(flags >> 8);
                            changed++;
                        }
                    }
                    uint next = BitConverter.ToUInt32(f, (int)aux + 12);
                    if (next == 0) break;
                    aux += next;
                }
                uint vnext = BitConverter.ToUInt32(f, (int)vn + 12);
                if (vnext == 0) break;
                vn += vnext;
            }
        }
        return changed;
    }

    static string ReadCString(byte[] f, long at)
    {
        int end = (int)at;
        while (end < f.Length && f[end] != 0) end++;
        return Encoding.ASCII.GetString(f, (int)at, end - (int)at);
    }
}
