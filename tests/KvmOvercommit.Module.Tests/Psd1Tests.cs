using KvmOvercommit.Module.Tests.Infrastructure;

namespace KvmOvercommit.Module.Tests;

public class Psd1Tests
{
    [Fact]
    public void ParsesTheRealManifest()
    {
        var d = Psd1.Parse(File.ReadAllText(Path.Combine(RepoPaths.Root, "module", "KvmOvercommit.psd1")));
        Assert.Equal("KvmOvercommit.dll", d["rootmodule"]);
        Assert.IsType<Dictionary<string, object?>>(((Dictionary<string, object?>)d["PrivateData"]!)["PSData"]);
    }

    [Fact]
    public void ReadsStringsListsCommentsAndNesting()
    {
        var d = Psd1.Parse("""
            <# header #>
            @{
                A = 'it''s'   # comment
                "B" = "x`"y"; C = 1, 'two'
                D = @(
                    'p' # one
                    'q', 'r'
                )
                E = @{ F = $true; G = $null }
                H = @()
            }
            """);
        Assert.Equal("it's", d["A"]);
        Assert.Equal("x\"y", d["B"]);
        Assert.Equal(["1", "two"], Psd1.Strings(d["C"]));
        Assert.Equal(["p", "q", "r"], Psd1.Strings(d["D"]));
        Assert.Equal(true, ((Dictionary<string, object?>)d["E"]!)["F"]);
        Assert.Empty(Psd1.Strings(d["H"]));
    }

    [Theory]
    [InlineData("@{ A = 'x' ")]
    [InlineData("@{ A = $env:HOME }")]
    [InlineData("@{ A = 'x'; A = 'y' }")]
    [InlineData("@{ A 'x' }")]
    public void RejectsWhatIsNotADataFile(string text) => Assert.Throws<FormatException>(() => Psd1.Parse(text));
}
