//! Facts about the machine, peak memory, and evicting files from the page
//! cache: Linux only, read from /proc.

use serde::Serialize;
use std::path::Path;

/// The machine a run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Logical CPUs available to the process (`nproc`).
    pub nproc: usize,
    /// Total memory, GiB.
    pub mem_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// File system type and device under the data directory.
    pub fs: String,
    /// Load averages (1, 5, 15 min) when the facts were taken.
    pub loadavg: [f64; 3],
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> [f64; 3] {
    let text = read("/proc/loadavg");
    let mut it = text.split_whitespace().map(|w| w.parse().unwrap_or(f64::NAN));
    [(); 3].map(|_| it.next().unwrap_or(f64::NAN))
}

/// The mount (type and source) holding `dir`: the longest mount point that
/// is a prefix of it.
pub fn file_system(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let mut best: Option<(usize, String)> = None;
    for line in read("/proc/self/mountinfo").lines() {
        // id parent maj:min root mountpoint opts... - fstype source superopts
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else { continue };
        let (Some(mount), Some(fstype), Some(source)) = (fields.get(4), fields.get(dash + 1), fields.get(dash + 2))
        else {
            continue;
        };
        if dir.starts_with(mount) && best.as_ref().is_none_or(|(len, _)| mount.len() >= *len) {
            best = Some((mount.len(), format!("{fstype} on {source} (mounted at {mount})")));
        }
    }
    best.map(|(_, fs)| fs).unwrap_or_else(|| "unknown".into())
}

impl Machine {
    /// The machine, with the file system of `data_dir`.
    pub fn describe(data_dir: &Path) -> Self {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim()))
            .unwrap_or("unknown")
            .to_owned();
        let mem_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Self {
            cpu,
            nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            mem_gib: (mem_kib / (1 << 20) as f64 * 10.0).round() / 10.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            fs: file_system(data_dir),
            loadavg: loadavg(),
        }
    }
}

/// A field of /proc/self/status in bytes (`VmHWM`, `VmRSS`, `RssAnon`).
pub fn status_bytes(field: &str) -> u64 {
    read("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Writes back dirty pages and drops every file under `dir` from the page
/// cache (`posix_fadvise(DONTNEED)`), so the next open reads from the disk.
/// Returns the total size of the files.
pub fn evict(dir: &Path) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    each_file(dir, |file| {
        file.sync_all()?;
        // SAFETY: plain syscall on a descriptor we own for the call.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(())
    })
}

/// Writes every file under `dir` back to the disk (`fsync` each) and waits
/// for it, so that the writeback of a store just built does not run during
/// the restores timed next. Returns the total size of the files.
pub fn write_back(dir: &Path) -> std::io::Result<u64> {
    each_file(dir, |file| file.sync_all())
}

/// Calls `f` on every file under `dir`, opened for reading; returns their
/// total size.
fn each_file(dir: &Path, mut f: impl FnMut(&std::fs::File) -> std::io::Result<()>) -> std::io::Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
                continue;
            }
            let file = std::fs::File::open(&path)?;
            f(&file)?;
            total += file.metadata()?.len();
        }
    }
    Ok(total)
}

/// CPU time counters, in clock ticks, for telling how busy the machine was
/// with other work during a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    /// Every tick of every CPU (idle included).
    pub total: u64,
    /// Ticks spent on any work (user, nice, system, irq, softirq).
    pub busy: u64,
    /// Ticks stolen by the hypervisor.
    pub steal: u64,
    /// Ticks of this process and its reaped children.
    pub own: u64,
}

impl CpuTimes {
    /// Reads /proc/stat and /proc/self/stat.
    pub fn now() -> Self {
        let stat = read("/proc/stat");
        let cpu: Vec<u64> =
            stat.lines().next().unwrap_or("").split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
        let field = |i: usize| cpu.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal
        let busy = field(0) + field(1) + field(2) + field(5) + field(6);
        let me = read("/proc/self/stat");
        // Fields after the command name (which may hold spaces): state is
        // field 3; utime, stime, cutime, cstime are fields 14 to 17.
        let rest = me.rsplit_once(')').map_or("", |(_, r)| r);
        let own: u64 = rest.split_whitespace().skip(11).take(4).map(|v| v.parse().unwrap_or(0)).sum();
        Self { total: cpu.iter().take(8).sum(), busy, steal: field(7), own }
    }

    /// Shares of all CPUs between `self` and `later`: (busy with other
    /// processes, stolen by the hypervisor).
    pub fn others_since(&self, later: &CpuTimes) -> (f64, f64) {
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        let others = later.busy.saturating_sub(self.busy).saturating_sub(later.own.saturating_sub(self.own));
        (others as f64 / total, later.steal.saturating_sub(self.steal) as f64 / total)
    }
}

/// Write activity of the block device under a directory, and this
/// process's own share, for telling whether other work used the disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskTimes {
    /// Bytes written to the device.
    pub written: u64,
    /// Flush requests the device completed (fdatasync and journal commits
    /// of everyone).
    pub flushes: u64,
    /// Bytes this process (and its reaped children: they only read) sent
    /// to storage (`write_bytes` of /proc/self/io).
    pub own_written: u64,
}

/// The device name (`vda`) of the mount holding `dir`.
pub fn device_of(dir: &Path) -> Option<String> {
    let fs = file_system(dir);
    let source = fs.split_whitespace().nth(2)?;
    Some(source.strip_prefix("/dev/")?.to_owned())
}

impl DiskTimes {
    /// Reads /proc/diskstats for `device` and /proc/self/io.
    pub fn now(device: &str) -> Self {
        let stats = read("/proc/diskstats");
        let fields: Vec<u64> = stats
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.get(2) == Some(&device))
            .map(|f| f[3..].iter().map(|v| v.parse().unwrap_or(0)).collect())
            .unwrap_or_default();
        // After major, minor, name: reads, merged, sectors read, ms,
        // writes, merged, sectors written (6), ms, in flight, io ms, weighted
        // ms, discards (4 fields), flushes (15), flush ms.
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        let own_written = read("/proc/self/io")
            .lines()
            .find_map(|l| l.strip_prefix("write_bytes:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Self { written: field(6) * 512, flushes: field(15), own_written }
    }

    /// (bytes written by others, device flushes in total) between `self`
    /// and `later`.
    pub fn since(&self, later: &DiskTimes) -> (u64, u64) {
        let all = later.written.saturating_sub(self.written);
        let own = later.own_written.saturating_sub(self.own_written);
        (all.saturating_sub(own), later.flushes.saturating_sub(self.flushes))
    }
}
