using System.Management.Automation;
using KvmOvercommit.Engine.Qemu;

namespace KvmOvercommit.Commands;

/// <summary>Returns a tiny bootable test guest (kernel and initramfs), building and caching it on first use.</summary>
/// <remarks>
/// The kernel comes from Debian's cloud kernel package (apt-get download of the versioned package that
/// linux-image-cloud-amd64 depends on, unpacked with dpkg-deb -x; nothing is installed, no root needed); the initramfs is
/// written by the module from busybox-static, the virtio modules (loaded in dependency order) and an init script that
/// prints KVMOC-READY on the serial console. Both are cached under $XDG_CACHE_HOME (or ~/.cache)
/// /kvmovercommit/tiny-guest/&lt;kernel version&gt;/. Kernel and Initrd bind by property name into Start-KvmGuest.
/// Kernel arguments the guest understands: kvmoc.fill=&lt;MiB&gt;,&lt;seed&gt; fills that much RAM with a pattern that is the same
/// in every guest with the same seed (KSM can merge it); kvmoc.io=read|write|rw keeps reading and/or writing the first MiB
/// of its first virtio disk; kvmoc.quiet prints nothing but the ready line. The guest powers off on an ACPI power
/// button press (Stop-KvmGuest). It boots to the ready line in about 2.5 s under TCG.
/// </remarks>
/// <example>
/// <code>Get-KvmTinyGuest | Start-KvmGuest -Name tiny1 -MemoryMB 128 -PassThru</code>
/// <para>Boots the tiny guest without a disk.</para>
/// </example>
/// <example>
/// <code>$t = Get-KvmTinyGuest; 1..4 | % { New-QcowOverlay "t$_.qcow2" -BackingPath base.qcow2 } | Start-KvmGuest -Kernel $t.Kernel -Initrd $t.Initrd -KernelArguments 'kvmoc.fill=64,1' -MemoryMB 128</code>
/// <para>Boots four tiny guests on overlays of one base, each filling 64 MiB with the same pattern for KSM to merge.</para>
/// </example>
/// <example>
/// <code>$t = Get-KvmTinyGuest -Variant Fleet; Start-KvmGuest -Name web1 -Kernel $t.Kernel -Initrd $t.Initrd -Network Tap -Bridge br0 -KernelArguments "kvmoc.name=web1 kvmoc.sshkey=$((Get-Content ~/.ssh/id_ed25519.pub) -replace ' ', ',')"</code>
/// <para>A guest on bridge br0 that takes a DHCP lease as web1 and lets root in over SSH with your key.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "KvmTinyGuest")]
[OutputType(typeof(TinyGuestImage))]
public sealed class GetKvmTinyGuestCommand : KvmCmdlet
{
    /// <summary>Download and build again even when the cache has an image.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Basic (default), or Fleet: with a virtio NIC brought up by busybox udhcpc (sending kvmoc.name= as host name) and dropbear accepting the key in kvmoc.sshkey=, so `ansible -m raw` reaches it (no Python: `-m ping` does not work).</summary>
    [Parameter]
    public TinyGuestVariant Variant { get; set; } = TinyGuestVariant.Basic;

    /// <summary>The cache root (default: $XDG_CACHE_HOME/kvmovercommit/tiny-guest or ~/.cache/kvmovercommit/tiny-guest).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? CacheDirectory { get; set; }

    /// <inheritdoc />
    protected override void EndProcessing()
    {
        var options = new TinyGuestOptions { Force = Force, CacheRoot = CacheDirectory is null ? null : ResolvePath(CacheDirectory) };
        options.Variant = Variant;
        InvokeAsync(async (observer, emit, ct) => emit(await TinyGuest.GetAsync(options, observer, ct).ConfigureAwait(false)), terminating: true);
    }
}
