namespace KvmOvercommit.Engine.Tests.Infrastructure;

/// <summary>Runs kvmoc in-process (Program.Run) and captures its exit code, stdout and stderr.</summary>
public static class Kvmoc
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = KvmOvercommit.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }
}
