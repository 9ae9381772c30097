using System.Runtime.CompilerServices;

// The exporter's stream factory is a test hook (disk-full simulation), not public API.
[assembly: InternalsVisibleTo("E3.Tests")]
