namespace KvmOvercommit.Engine.Tests.Infrastructure;

/// <summary>Files under Fixtures/ (copied next to the test assembly).</summary>
public static class Fixture
{
    public static string PathOf(string relative) => System.IO.Path.Combine(AppContext.BaseDirectory, "Fixtures", relative);
    public static string Text(string relative) => File.ReadAllText(PathOf(relative));

    /// <summary>The repository's root: the folder above the test assembly that holds KvmOvercommit.sln.</summary>
    public static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(System.IO.Path.Combine(dir.FullName, "KvmOvercommit.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("the repository root (KvmOvercommit.sln) is not above " + AppContext.BaseDirectory);
    }
}
