namespace E3.Cli.Commands;

/// <summary>
/// The command line itself is wrong: an option value outside what the option accepts, or options that cannot go
/// together. Exits with <see cref="ExitCodes.Usage"/>, as the parser's own errors (an unknown or missing option) do;
/// errors about files, data or a model exit with <see cref="ExitCodes.Failure"/>.
/// </summary>
internal sealed class UsageException(string message) : ArgumentException(message);
