namespace KvmOvercommit.Engine.Qemu;

/// <summary>The tiny guest's /init (busybox ash), kept here so a change to it yields a new cached initramfs.</summary>
internal static class TinyGuestInit
{
    /// <summary>The line init prints on the serial console once it is ready (after any fill and with I/O running).</summary>
    public const string ReadyMarker = "KVMOC-READY";

    /// <summary>The line init prints when <c>kvmoc.fill=&lt;MiB&gt;,&lt;seed&gt;,&lt;seconds&gt;</c> freed its fill again.</summary>
    public const string FreedMarker = "KVMOC-FREED";

    /// <summary>Module load order: dependencies first (the package has no modules.dep for busybox insmod).</summary>
    public static readonly string[] Modules =
    {
        "virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
        "virtio_blk", "virtio_balloon", "button", "evdev",
    };

    public const string Script = """
#!/bin/sh
# kvmoc tiny guest init. Kernel arguments:
#   kvmoc.fill=<MiB>[,<seed>[,<seconds>]]  fill <MiB> of RAM (ramfs) with a pattern that is the same in every guest
#                              with the same seed; with <seconds>, free the fill again that long after the ready line
#   kvmoc.io=read|write|rw     keep reading and/or writing the first 1 MiB of /dev/vda (O_DIRECT) in a loop
#   kvmoc.quiet                print nothing but the ready line
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fill=; io=; quiet=
for a in $(cat /proc/cmdline); do
  case "$a" in
    kvmoc.fill=*) fill="${a#kvmoc.fill=}" ;;
    kvmoc.io=*) io="${a#kvmoc.io=}" ;;
    kvmoc.quiet) quiet=1 ;;
  esac
done
say() { [ -n "$quiet" ] || echo "kvmoc: $*"; }
off() { say "powering off"; sync; poweroff -f; }
trap off TERM PWR USR2
for m in @MODULES@; do
  [ -f "/lib/modules/$m.ko" ] && { insmod "/lib/modules/$m.ko" 2>/dev/null || say "insmod $m failed"; }
done
# ACPI power button (QMP system_powerdown) -> power off: there is no acpid, so read one event from its input device.
for e in /sys/class/input/event*; do
  [ -e "$e/device/name" ] || continue
  case "$(cat "$e/device/name")" in
    *"Power Button"*) ( dd if="/dev/input/${e##*/}" of=/dev/null bs=24 count=1 2>/dev/null && off ) & ;;
  esac
done
# virtio-blk (vendor 1af4, device 1001 legacy / 1042 modern) present -> wait for /dev/vda
disk=
for d in /sys/bus/pci/devices/*; do
  case "$(cat "$d/vendor" 2>/dev/null):$(cat "$d/device" 2>/dev/null)" in
    0x1af4:0x1001|0x1af4:0x1042) disk=1 ;;
  esac
done
if [ -n "$disk" ]; then
  n=0
  while [ ! -b /dev/vda ] && [ $n -lt 200 ]; do usleep 50000; n=$((n+1)); done
  [ -b /dev/vda ] && say "disk /dev/vda $(cat /sys/block/vda/size) sectors" || say "no /dev/vda"
fi
if [ -n "$fill" ]; then
  mib="${fill%%,*}"; rest="${fill#*,}"; [ "$rest" = "$fill" ] && rest=
  seed="${rest%%,*}"; [ -n "$seed" ] || seed=1
  secs=; case "$rest" in *,*) secs="${rest#*,}" ;; esac
  mkdir -p /fill && mount -t ramfs ramfs /fill
  start=$(( (seed + 1) * 1000000 ))
  seq $start $((start + 140000)) | head -c 1048576 > /fill/block
  i=0
  while [ $i -lt "$mib" ]; do cat /fill/block; i=$((i+1)); done > /fill/data
  rm -f /fill/block
  say "filled $mib MiB (seed $seed)"
  if [ -n "$secs" ]; then
    ( sleep "$secs"; rm -f /fill/data; umount /fill; echo "@FREED@ $mib MiB" ) &
  fi
fi
if [ -n "$io" ] && [ -b /dev/vda ]; then
  (
    while :; do
      case "$io" in read|rw) dd if=/dev/vda of=/dev/null bs=4096 count=256 iflag=direct 2>/dev/null ;; esac
      case "$io" in write|rw) dd if=/dev/zero of=/dev/vda bs=4096 count=256 oflag=direct conv=fsync 2>/dev/null ;; esac
    done
  ) &
  say "io $io on /dev/vda"
fi
echo "@READY@"
while :; do sleep 3600 & wait $!; done
""";

    /// <summary>The script with the module list and ready marker filled in.</summary>
    public static string Render() => Script.Replace("@MODULES@", string.Join(' ', Modules), StringComparison.Ordinal)
        .Replace("@READY@", ReadyMarker, StringComparison.Ordinal).Replace("@FREED@", FreedMarker, StringComparison.Ordinal);
}
