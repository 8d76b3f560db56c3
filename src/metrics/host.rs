//! What `/metrics` reads from the machine: the store's files, the data
//! directory's filesystem and this process (`/proc/self`).

/// Sizes on disk, in bytes.
#[derive(Debug, Default)]
pub struct Files {
    pub store: u64,
    pub wal: u64,
    /// Of the filesystem that holds the data directory.
    pub disk_free: u64,
    pub disk_size: u64,
}

impl Files {
    /// The store files in `data_dir` (`convlog.db` and its WAL) and its filesystem.
    pub fn of(data_dir: &std::path::Path) -> Files {
        let size = |name: &str| std::fs::metadata(data_dir.join(name)).map_or(0, |m| m.len());
        let (disk_free, disk_size) = disk(data_dir);
        Files {
            store: size("convlog.db"),
            wal: size("convlog.db-wal"),
            disk_free,
            disk_size,
        }
    }
}

/// (available, total) bytes of the filesystem holding `path`.
fn disk(path: &std::path::Path) -> (u64, u64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return (0, 0);
    };
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a statvfs the call fills.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return (0, 0);
    }
    let block = stat.f_frsize as u64;
    (stat.f_bavail as u64 * block, stat.f_blocks as u64 * block)
}

/// The process, from `/proc/self` (zeros where it can't be read).
#[derive(Debug, Default)]
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub threads: u64,
    pub start_time_seconds: f64,
}

impl Process {
    /// This process, now.
    pub fn now() -> Process {
        // SAFETY: sysconf and getrlimit only read configuration.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
                libc::sysconf(libc::_SC_PAGESIZE).max(1) as u64,
            )
        };
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| -> u64 { fields.get(n).and_then(|f| f.parse().ok()).unwrap_or(0) };
        // utime and stime are fields 14 and 15 of stat, num_threads 20 and
        // starttime 22 (1-based, counting pid and comm): 11, 12, 17 and 19
        // after the command name. starttime counts ticks since boot.
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix("btime "))
                    .and_then(|t| t.trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        let resident = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: fills `limit`.
        let max_fds = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
            0 => limit.rlim_cur,
            _ => 0,
        };
        Process {
            cpu_seconds: (field(11) + field(12)) as f64 / ticks,
            resident_bytes: resident * page,
            open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
            max_fds,
            threads: field(17),
            start_time_seconds: boot as f64 + field(19) as f64 / ticks,
        }
    }
}
