namespace E3.Interop.Kernels;

/// <summary>What NVRTC produces for a device: CUBIN for a real SM, or PTX for a virtual one.</summary>
internal enum KernelImageKind
{
    /// <summary>Machine code for exactly one SM version; loads without JIT.</summary>
    Cubin,

    /// <summary>PTX for a virtual architecture; the driver JIT-compiles it for newer GPUs.</summary>
    Ptx,
}

/// <summary>A compilation target: an SM version (e.g. 90) and the image kind.</summary>
internal readonly record struct KernelTarget(int SmVersion, KernelImageKind Kind)
{
    /// <summary>The NVRTC <c>-arch</c> value: <c>sm_90</c> for CUBIN, <c>compute_90</c> for PTX.</summary>
    public string Arch => Kind == KernelImageKind.Cubin ? $"sm_{SmVersion}" : $"compute_{SmVersion}";

    /// <summary>
    /// CUBIN for the device's exact SM when NVRTC supports it; PTX for the newest SM NVRTC knows when the
    /// device is newer (the driver JITs it forward).
    /// </summary>
    /// <exception cref="NotSupportedException">The device is older than anything NVRTC supports, or NVRTC lists no arch.</exception>
    public static KernelTarget ForDevice(int deviceSm, IReadOnlyList<int> supportedSms)
    {
        ArgumentNullException.ThrowIfNull(supportedSms);
        if (supportedSms.Count == 0)
            throw new NotSupportedException("NVRTC reports no supported architectures");
        if (supportedSms.Contains(deviceSm))
            return new KernelTarget(deviceSm, KernelImageKind.Cubin);
        int newest = supportedSms.Max();
        if (deviceSm > newest)
            return new KernelTarget(newest, KernelImageKind.Ptx);
        throw new NotSupportedException(
            $"GPU architecture sm_{deviceSm} is not supported by this NVRTC (supports sm_{string.Join(", sm_", supportedSms)})");
    }

    /// <summary>Parses <c>sm_90</c> (CUBIN) or <c>compute_90</c> (PTX).</summary>
    /// <exception cref="FormatException">Neither form, or a non-numeric version.</exception>
    public static KernelTarget Parse(string arch)
    {
        ArgumentNullException.ThrowIfNull(arch);
        var text = arch.Trim();
        (string prefix, KernelImageKind kind) = text.StartsWith("sm_", StringComparison.Ordinal) ? ("sm_", KernelImageKind.Cubin)
            : text.StartsWith("compute_", StringComparison.Ordinal) ? ("compute_", KernelImageKind.Ptx)
            : throw new FormatException($"architecture '{arch}' must look like sm_90 or compute_90");
        return int.TryParse(text[prefix.Length..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int sm) && sm > 0
            ? new KernelTarget(sm, kind)
            : throw new FormatException($"architecture '{arch}' has no numeric SM version after '{prefix}'");
    }

    /// <inheritdoc/>
    public override string ToString() => Arch;
}
