using KvmOvercommit.Engine.Experiment;
using KvmOvercommit.Engine.Tests.Infrastructure;
using KvmOvercommit.Engine.Tests.Ksm;

namespace KvmOvercommit.Engine.Tests.Experiment;

/// <summary>Planning (what -WhatIf shows) on a fake KSM tree: names, paths, steps and refusals; nothing is created.</summary>
public class ExperimentPlanTests
{
    static void RequireQemu()
    {
        Prereq.RequireTool("qemu-system-x86_64");
        Prereq.RequireTool("qemu-img");
    }

    [SkippableFact]
    public void TheTinyGuestPlanNamesEveryGuestOverlayAndStepAndCreatesNothing()
    {
        RequireQemu();
        using var ksm = new FakeKsmKernel();
        using var t = new TempDir();
        var work = t.File("work");
        var plan = OvercommitExperiment.Plan(new ExperimentOptions { GuestCount = 3, WorkDirectory = work, Roots = ksm.Roots, Profiles = new[] { ExperimentProfile.Default, ExperimentProfile.Adaptive }, ReportPath = t.File("r") });
        Assert.True(plan.TinyGuest);
        Assert.True(plan.CreatesBaseImage);
        Assert.True(plan.CreatesWorkDirectory);
        Assert.Equal(3, plan.GuestNames.Length);
        Assert.Equal(3, plan.GuestNames.Distinct().Count());
        Assert.All(plan.GuestNames, n => Assert.StartsWith($"kvmoc-exp-{plan.RunId}-", n));
        Assert.Equal(plan.GuestNames.Select(n => Path.Combine(work, n + ".qcow2")), plan.Overlays);
        Assert.Equal(Path.Combine(work, $"kvmoc-exp-{plan.RunId}-base.qcow2"), plan.BaseImage);
        Assert.Equal("quiet kvmoc.quiet kvmoc.fill=32,1", plan.KernelArguments); // 128 MiB leaves 96 to the guest itself
        var text = plan.Describe();
        Assert.Contains("profile Default: unmerge every KSM page (run = 2", text);
        Assert.Contains("profile Adaptive", text);
        Assert.Contains("for 120 s", text);
        Assert.Contains("restore every KSM setting", text);
        Assert.Contains("samples.csv", text);
        Assert.False(Directory.Exists(work));
        Assert.Empty(ksm.Log);
    }

    [SkippableFact]
    public void ValidateEstimateNeedsACgroupAndCgroupLimitMBPlansOneNamedAfterTheRunWithoutCreatingIt()
    {
        RequireQemu();
        using var ksm = new FakeKsmKernel();
        using var t = new TempDir();
        var noCgroup = Assert.Throws<KvmOcException>(() => OvercommitExperiment.Plan(new ExperimentOptions { WorkDirectory = t.File("w"), Roots = ksm.Roots, ValidateEstimate = true }));
        Assert.Equal("ExperimentValidateNeedsCgroup", noCgroup.ErrorId);
        Assert.Contains("-CgroupLimitMB", noCgroup.Hint);
        var both = Assert.Throws<KvmOcException>(() => OvercommitExperiment.Plan(new ExperimentOptions { WorkDirectory = t.File("w"), Roots = ksm.Roots, Cgroup = "x", CgroupLimitMB = 512 }));
        Assert.Equal("ExperimentCgroupConflict", both.ErrorId);
        var tooSmall = Assert.Throws<KvmOcException>(() => OvercommitExperiment.Plan(new ExperimentOptions { WorkDirectory = t.File("w"), Roots = ksm.Roots, CgroupLimitMB = 10 }));
        Assert.Equal("ExperimentInvalidCgroupLimit", tooSmall.ErrorId);
        Assert.Equal("CgroupNotFound", Assert.Throws<KvmOcException>(() => OvercommitExperiment.Plan(new ExperimentOptions { WorkDirectory = t.File("w"), Roots = ksm.Roots, Cgroup = t.Path })).ErrorId);

        var controller = Path.Combine(ksm.Roots.Sys, "fs", "cgroup", "memory");
        Directory.CreateDirectory(controller);
        File.WriteAllText(Path.Combine(controller, "memory.limit_in_bytes"), "9223372036854771712\n");
        var plan = OvercommitExperiment.Plan(new ExperimentOptions { WorkDirectory = t.File("w"), Roots = ksm.Roots, CgroupLimitMB = 2048, ValidateEstimate = true, Profiles = new[] { ExperimentProfile.Default } });
        Assert.Equal(Path.Combine(controller, $"kvmoc-exp-{plan.RunId}"), plan.Cgroup);
        Assert.True(plan.CreatesCgroup);
        Assert.False(Directory.Exists(plan.Cgroup));
        var text = plan.Describe();
        Assert.Contains($"create the memory cgroup {plan.Cgroup} with a limit of 2048 MiB", text);
        Assert.Contains($"in the memory cgroup {plan.Cgroup}", text);
        Assert.Contains("boot more guests of the same kind into it one by one until one no longer fits", text);
        Assert.Contains($"remove the memory cgroup {plan.Cgroup}", text);
    }

    [SkippableFact]
    public void ARealBaseImageKeepsItsFolderAndIsNeverCreatedOrDeleted()
    {
        RequireQemu();
        using var ksm = new FakeKsmKernel();
        using var t = new TempDir();
        var baseImage = t.Write("win7-base.qcow2", "not read while planning");
        var plan = OvercommitExperiment.Plan(new ExperimentOptions { BaseImage = baseImage, GuestCount = 30, MemoryMB = 4048, CpuCount = 2, StaggerSeconds = 60, UntilStable = true, Roots = ksm.Roots });
        Assert.False(plan.TinyGuest);
        Assert.False(plan.CreatesBaseImage);
        Assert.False(plan.CreatesWorkDirectory);
        Assert.Equal(baseImage, plan.BaseImage);
        Assert.Equal(t.Path, plan.WorkDirectory);
        Assert.Null(plan.KernelArguments);
        Assert.Contains("60 s apart", plan.Describe());
        Assert.Contains("until stable (at most 1800 s)", plan.Describe());
        Assert.DoesNotContain("base image the experiment created", plan.Describe());
    }

    [SkippableFact]
    public void BadOptionsAreRefusedBeforeAnythingHappens()
    {
        RequireQemu();
        using var ksm = new FakeKsmKernel();
        using var t = new TempDir();
        void Refused(string errorId, ExperimentOptions o)
        {
            o.Roots ??= ksm.Roots;
            o.WorkDirectory ??= t.Path;
            var e = Assert.Throws<KvmOcException>(() => OvercommitExperiment.Plan(o));
            Assert.Equal(errorId, e.ErrorId);
        }
        Refused("ExperimentInvalidGuestCount", new ExperimentOptions { GuestCount = 0 });
        Refused("ExperimentDuplicateProfile", new ExperimentOptions { Profiles = new[] { ExperimentProfile.Default, ExperimentProfile.Default } });
        Refused("ExperimentNoProfile", new ExperimentOptions { Profiles = Array.Empty<ExperimentProfile>() });
        Refused("ExperimentInvalidDuration", new ExperimentOptions { Duration = TimeSpan.FromSeconds(1), Interval = TimeSpan.FromSeconds(2) });
        Refused("ExperimentInvalidFill", new ExperimentOptions { FillMiB = 200 });
        Refused("BaseImageNotFound", new ExperimentOptions { BaseImage = t.File("missing.qcow2") });
        using (var old = new FakeKsmKernel("sys-5.15"))
            Refused("KsmAdvisorNotAvailable", new ExperimentOptions { Roots = old.Roots, Profiles = new[] { ExperimentProfile.Advisor } });
        Refused("KsmNotAvailable", new ExperimentOptions { Roots = new HostRoots(Sys: t.File("nosys")) });
    }

    [SkippableFact]
    public void AnExistingFileWhereAnOverlayWouldGoIsNeverOverwritten()
    {
        RequireQemu();
        using var ksm = new FakeKsmKernel();
        using var t = new TempDir();
        var baseImage = t.Write("base.qcow2", "x");
        var o = new ExperimentOptions { BaseImage = baseImage, Roots = ksm.Roots, NamePrefix = "win7", RunId = "r1", GuestCount = 2 };
        Assert.Equal(new[] { t.File("win7-r1-1.qcow2"), t.File("win7-r1-2.qcow2") }, OvercommitExperiment.Plan(o).Overlays);
        t.Write("win7-r1-2.qcow2", "someone's disk");
        var e = Assert.Throws<KvmOcException>(() => OvercommitExperiment.Plan(o));
        Assert.Equal("ExperimentFileExists", e.ErrorId);
        Assert.Equal(ErrorKind.ResourceExists, e.Kind);
        Assert.Equal("someone's disk", File.ReadAllText(t.File("win7-r1-2.qcow2")));
    }
}
