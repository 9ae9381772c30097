using System.Runtime.CompilerServices;

// The tests drive the portable micro-kernel directly on AVX2 machines, where the public entry points would
// never select it.
[assembly: InternalsVisibleTo("E3.Tests")]
