using KvmOvercommit.Cli;

namespace KvmOvercommit.Engine.Tests.Native;

/// <summary>
/// kvmoc's areas are listed (Program.Providers, GuestOpsCli.GuestSubcommandProviders), not found by reflection,
/// because the native build trims what nothing names. Reflection here, in the JIT build, finds every provider
/// class, so a new area cannot be left out of the list (and so out of kvmoc).
/// </summary>
public class CliProviderTests
{
    static IEnumerable<Type> Implementations<T>() => typeof(Program).Assembly.GetTypes()
        .Where(t => typeof(T).IsAssignableFrom(t) && !t.IsAbstract && !t.IsInterface).OrderBy(t => t.Name, StringComparer.Ordinal);

    [Fact]
    public void EveryCommandProviderIsListedOnceInClassNameOrder()
    {
        var listed = Program.Providers().Select(p => p.GetType()).ToArray();
        Assert.Equal(Implementations<ICliCommandProvider>(), listed);
    }

    [Fact]
    public void EveryGuestSubcommandProviderIsListedOnce()
    {
        var listed = new GuestOpsCli().GuestSubcommandProviders().Select(p => p.GetType()).OrderBy(t => t.Name, StringComparer.Ordinal).ToArray();
        Assert.Equal(Implementations<IGuestSubcommandProvider>(), listed);
    }
}
