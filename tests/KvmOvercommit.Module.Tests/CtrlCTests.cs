using System.Management.Automation;
using KvmOvercommit.Module.Tests.Infrastructure;

namespace KvmOvercommit.Module.Tests;

/// <summary>Ctrl+C (PowerShell.Stop()) on the streaming cmdlets that change nothing: Stop() returns within 2 s.</summary>
public class CtrlCTests(SessionFixture fx) : IClassFixture<SessionFixture>
{
    [Theory]
    [InlineData("Watch-KsmStat -IntervalSeconds 0.2")]
    [InlineData("Watch-KsmStat -IntervalSeconds 30")]
    [InlineData("Measure-DeviceIops -Continuous -IntervalSeconds 0.2")]
    [InlineData("Measure-DeviceIops -Continuous -IntervalSeconds 30")]
    [InlineData("Measure-ProcessIops -Id $PID -Continuous -IntervalSeconds 0.2")]
    [InlineData("Measure-ProcessIops -Id $PID -Continuous -IntervalSeconds 30")]
    public void StopReturnsWithinTwoSeconds(string script)
    {
        // A long interval: stopped while it waits for the next sample; a short one: stopped while it streams.
        var longWait = script.EndsWith(" 30");
        var (took, output, state, errors) = CtrlC.StopWhen(fx.Session, script, outputs: longWait ? 0 : 2,
            ready: longWait ? WaitABit() : null);
        Assert.True(took < TimeSpan.FromSeconds(2), $"Stop() took {took}");
        Assert.Equal(PSInvocationState.Stopped, state);
        Assert.Empty(errors);
        if (!longWait) Assert.True(output.Count >= 2);
    }

    static Func<bool> WaitABit()
    {
        var until = DateTime.UtcNow.AddSeconds(1);
        return () => DateTime.UtcNow > until;
    }
}
