namespace KvmOvercommit.Engine.Tests.Infrastructure;

/// <summary>Files under Fixtures/ (copied next to the test assembly).</summary>
public static class Fixture
{
    public static string PathOf(string relative) => System.IO.Path.Combine(AppContext.BaseDirectory, "Fixtures", relative);
    public static string Text(string relative) => File.ReadAllText(PathOf(relative));
}
