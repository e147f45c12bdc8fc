using KvmOvercommit.Engine;

namespace KvmOvercommit.Engine.Tests;

public class CoreTests
{
    [Theory]
    [InlineData("win7-*", "win7-12", true)]
    [InlineData("win7-?", "win7-1", true)]
    [InlineData("win7-?", "win7-12", false)]
    [InlineData("WIN7*", "win7-3", true)]
    [InlineData("md12[67]", "md126", true)]
    [InlineData("md12[67]", "md125", false)]
    [InlineData("a`*b", "a*b", true)]
    [InlineData("a`*b", "axb", false)]
    [InlineData("guest, with comma", "guest, with comma", true)]
    public void WildcardMatchesLikePowerShell(string pattern, string value, bool expected)
        => Assert.Equal(expected, new Wildcard(pattern).IsMatch(value));

    [Fact]
    public void IoErrorsMapByErrno()
    {
        Assert.Equal(ErrorKind.NotFound, KvmOcException.FromIo(new FileNotFoundException("x"), "Id", "read", "/x").Kind);
        Assert.Equal(ErrorKind.PermissionDenied, KvmOcException.FromIo(new UnauthorizedAccessException("x"), "Id", "write", "/x").Kind);
        var busy = KvmOcException.FromIo(new System.ComponentModel.Win32Exception(Errno.EBUSY), "Id", "write", "/x");
        Assert.Equal(ErrorKind.ResourceBusy, busy.Kind);
        Assert.Equal("Id", busy.ErrorId);
        Assert.Equal("/x", busy.Target);
    }
}
