using KvmOvercommit.Cli;
using KvmOvercommit.Engine.Experiment;
using KvmOvercommit.Engine.Tests.GuestOps;
using KvmOvercommit.Engine.Tests.Infrastructure;

namespace KvmOvercommit.Engine.Tests.Experiment;

/// <summary>`kvmoc experiment`: options in kebab case, --what-if changes nothing, bad values are errors with exit codes.</summary>
public class ExperimentCliTests
{
    [Fact]
    public void ProfilesComeCommaSeparatedOrRepeatedInAnyCase()
    {
        Assert.Equal(new[] { ExperimentProfile.Default, ExperimentProfile.Aggressive, ExperimentProfile.Adaptive },
            ExperimentCli.ParseProfiles(new[] { "Default,aggressive", "ADAPTIVE" }));
        Assert.Null(ExperimentCli.ParseProfiles(null));
        Assert.Equal("ExperimentInvalidProfile", Assert.Throws<KvmOcException>(() => ExperimentCli.ParseProfiles(new[] { "Default,Turbo" })).ErrorId);
        Assert.Equal("ExperimentInvalidProfile", Assert.Throws<KvmOcException>(() => ExperimentCli.ParseProfiles(new[] { "7" })).ErrorId);
    }

    [SkippableFact]
    public void WhatIfPrintsThePlanAndCreatesNothing()
    {
        Prereq.RequireRoot();
        Prereq.RequireKsm();
        Prereq.RequireTool("qemu-system-x86_64");
        Prereq.RequireTool("qemu-img");
        using var t = new TempDir();
        var work = t.File("work");
        var (rc, stdout, stderr) = HandStartedGuestTests.Cli("experiment", "--guest-count", "3", "--memory-mb", "256", "--ksm-profile", "Aggressive,Advisor",
            "--duration", "00:00:30", "--work-directory", work, "--report-path", t.File("report"), "--what-if");
        Assert.True(rc == 0, stderr);
        var lines = stdout.Trim().Split('\n');
        Assert.All(lines, l => Assert.StartsWith("What if: ", l));
        Assert.Contains(lines, l => l.Contains("start 3 guest(s)") && l.Contains("256 MiB") && l.Contains("kvmoc.fill=128,1"));
        Assert.Contains(lines, l => l.StartsWith("What if: profile Advisor: unmerge") && l.Contains("for 30 s"));
        Assert.False(Directory.Exists(work));
        Assert.False(Directory.Exists(t.File("report")));
    }

    [Fact]
    public void BadValuesAreErrorsWithTheirExitCode()
    {
        var (rc, _, stderr) = HandStartedGuestTests.Cli("experiment", "--ksm-profile", "Turbo", "--what-if");
        Assert.Equal(2, rc);
        Assert.StartsWith("ExperimentInvalidProfile:", stderr);
        (rc, _, stderr) = HandStartedGuestTests.Cli("experiment", "--duration", "soon", "--what-if");
        Assert.Equal(2, rc);
        Assert.Contains("is not a duration", stderr);
    }
}
